"""Server models shaped like real APIs' limits: ``rl.profiles.openai(...)``,
``rl.profiles.anthropic(...)``, ``rl.profiles.github(...)``.

Each returns a :class:`ServerModel`: the quotas (:class:`~ratelab.server.policies.ServerRateLimit`,
checked together, atomically), the header style, and whether a refusal of the primary
quota carries ``Retry-After``. Use it as ``rl.LocalServer(profile=rl.profiles.openai(rpm=60,
tpm=30_000))``, or give that server to ``rl.simulate`` (the SimulatedServer answers the
same quotas, costs and headers on the virtual clock). A request's cost is its
``X-Ratelab-Cost`` header (1 without it).

The shapes follow the vendors' public documentation as found on 2026-12-01; what could not
be confirmed there is said in each docstring. The numbers are account-tier dependent:
pass your own.
"""

from __future__ import annotations

from dataclasses import dataclass

from ratelab._validate import integer
from ratelab.errors import ConfigError
from ratelab.experiment.distributions import Distribution, as_distribution
from ratelab.protocol.header_styles import STYLES
from ratelab.server.policies import ServerRateLimit, check_names

__all__ = ["ServerModel", "anthropic", "github", "openai"]


@dataclass(frozen=True)
class ServerModel:
    """A server's limits as a whole: ``rate_limit`` (quotas, the primary one first),
    ``headers`` (a header style or None), ``actual_cost`` (the fraction of a request's
    declared cost its response uses, refunded to the tokens quotas at its end; None: all of
    it) and ``primary_retry_after`` (whether a refusal by the first quota carries
    ``Retry-After``; GitHub's primary limit does not, it says ``x-ratelimit-reset``)."""

    name: str
    rate_limit: tuple[ServerRateLimit, ...]
    headers: str | None = "ietf"
    actual_cost: Distribution | None = None
    primary_retry_after: bool = True
    args: tuple[tuple[str, object], ...] = ()  # the profile function's arguments, for repr

    def __post_init__(self) -> None:
        if not self.rate_limit or not all(isinstance(r, ServerRateLimit) for r in self.rate_limit):
            raise ConfigError(
                f"{self.name}(rate_limit)", self.rate_limit, "must be one or more ServerRateLimit"
            )
        if self.headers is not None and self.headers not in STYLES:
            raise ConfigError(
                f"{self.name}(headers)", self.headers, f"must be one of {', '.join(STYLES)} or None"
            )
        check_names(self.rate_limit, parameter=f"{self.name}(rate_limit)")

    def kwargs(self) -> dict[str, object]:
        """The LocalServer arguments this model stands for."""
        return {"rate_limit": list(self.rate_limit), "headers": self.headers,
                "actual_cost": self.actual_cost}  # fmt: skip

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.args if v is not None)
        return f"profiles.{self.name}({args})"


def _limit(profile: str, parameter: str, value: object) -> int:
    name = f"profiles.{profile}({parameter})"
    if value is None:
        raise ConfigError(
            name, value, "is required: the vendor's limit depends on your account tier"
        )
    return integer(name, value, minimum=1)


def openai(
    *, rpm: int | None = None, tpm: int | None = None, actual_cost: object = None,
    algorithm: str = "token_bucket",
) -> ServerModel:  # fmt: skip
    """OpenAI's shape: requests per minute (``rpm``) **and** tokens per minute (``tpm``) at
    once, announced as ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with resets
    as durations (``1s``, ``6m0s``), 429 with ``Retry-After`` when refused.

    Source: OpenAI's "Rate limits" guide (platform.openai.com/docs/guides/rate-limits):
    limits are measured in RPM, RPD, TPM, TPD and IPM, "can be hit across any of the options
    depending on what occurs first"; the reset headers are "the time until the rate limit
    (based on requests/tokens) resets to its initial state"; the tokens a request counts
    are estimated from its input and ``max_tokens`` when it arrives (so the declared cost
    is charged; ``actual_cost`` models a refund of the unused part, which OpenAI's guide
    does not promise). Both limits are required: OpenAI publishes them per model and usage
    tier, with no one default. Not confirmed: the algorithm (the reset-to-initial-state
    wording fits a continuously refilled bucket, ``"token_bucket"``; OpenAI does not name
    one), and the day limits (RPD, TPD), left out."""
    r = _limit("openai", "rpm", rpm)
    t = _limit("openai", "tpm", tpm)
    return ServerModel(
        "openai",
        (ServerRateLimit(r, 60.0, algorithm=algorithm, name="requests"),
         ServerRateLimit(t, 60.0, algorithm=algorithm, unit="tokens", name="tokens")),
        headers="openai",
        actual_cost=as_distribution("profiles.openai(actual_cost)", actual_cost),
        args=(("rpm", r), ("tpm", t), ("actual_cost", actual_cost), ("algorithm", algorithm)),
    )  # fmt: skip


def anthropic(
    *, rpm: int | None = 50, input_tpm: int | None = 30_000, output_tpm: int | None = 8_000,
    actual_cost: object = None,
) -> ServerModel:  # fmt: skip
    """Anthropic's shape: requests per minute, input tokens per minute and output tokens per
    minute, each a token bucket, announced as ``anthropic-ratelimit-{requests,
    input-tokens,output-tokens}-{limit,remaining,reset}`` (resets as RFC 3339 dates), 429
    with ``retry-after`` (seconds) when refused.

    Source: Anthropic's "Rate limits" documentation (docs.anthropic.com/en/api/rate-limits):
    limits in RPM, ITPM and OTPM per model class, measured with the token bucket algorithm
    ("your capacity is continuously replenished up to your maximum limit, rather than being
    reset at fixed intervals"), the header names above. Defaults: Tier 1 for Claude Sonnet
    (50 RPM, 30,000 ITPM, 8,000 OTPM) as third-party summaries of that page quote it; the
    page itself was not reachable here to confirm the numbers, which change with tiers and
    models. ratelab has one cost per request: both token quotas are charged the declared
    cost (Anthropic estimates output tokens from ``max_tokens`` at the start) and
    ``actual_cost`` refunds the unused part of both at the response's end."""
    return ServerModel(
        "anthropic",
        (ServerRateLimit(_limit("anthropic", "rpm", rpm), 60.0, algorithm="token_bucket",
                         name="requests"),
         ServerRateLimit(_limit("anthropic", "input_tpm", input_tpm), 60.0,
                         algorithm="token_bucket", unit="tokens", name="input-tokens"),
         ServerRateLimit(_limit("anthropic", "output_tpm", output_tpm), 60.0,
                         algorithm="token_bucket", unit="tokens", name="output-tokens")),
        headers="anthropic",
        actual_cost=as_distribution("profiles.anthropic(actual_cost)", actual_cost),
        args=(("rpm", rpm), ("input_tpm", input_tpm), ("output_tpm", output_tpm),
              ("actual_cost", actual_cost)),
    )  # fmt: skip


def github(
    *, per_hour: int | None = 5000, concurrent: int | None = 100,
    points_per_minute: int | None = 900,
) -> ServerModel:  # fmt: skip
    """GitHub's REST shape: a primary limit of ``per_hour`` requests per hour (a window that
    resets at ``x-ratelimit-reset``), and the secondary limits of at most ``concurrent``
    requests in progress and ``points_per_minute`` points per minute (a request's points
    are its ``X-Ratelab-Cost``: GitHub counts most GET requests 1 point and POST, PATCH,
    PUT and DELETE 5). Announced as ``x-ratelimit-limit``, ``-remaining``, ``-used``,
    ``-reset`` (epoch seconds), ``-resource`` of the primary limit; a refusal by the primary
    limit carries no ``Retry-After`` (wait for ``x-ratelimit-reset``), one by a secondary
    limit does.

    Source: GitHub's "Rate limits for the REST API" (docs.github.com/en/rest/using-the-rest-api/
    rate-limits-for-the-rest-api): 5,000 requests per hour for an authenticated user; "No
    more than 100 concurrent requests are allowed"; "No more than 900 points per minute
    are allowed for REST API endpoints"; exceeding a limit gets "a 403 or 429 response";
    for a secondary limit "If the retry-after response header is present, you should not
    retry your request until after that many seconds has elapsed". ratelab answers 429.
    Not modelled: the CPU-time and content-creation secondary limits, and the
    per-endpoint split of the points limit (here one pool)."""
    return ServerModel(
        "github",
        (ServerRateLimit(_limit("github", "per_hour", per_hour), 3600.0, name="core"),
         ServerRateLimit(_limit("github", "concurrent", concurrent), unit="concurrent",
                         name="concurrent"),
         ServerRateLimit(_limit("github", "points_per_minute", points_per_minute), 60.0,
                         unit="tokens", name="points")),
        headers="github",
        primary_retry_after=False,
        args=(("per_hour", per_hour), ("concurrent", concurrent),
              ("points_per_minute", points_per_minute)),
    )  # fmt: skip
