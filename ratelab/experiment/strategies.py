"""The client-side strategies: what bounds the requests an experiment sends.

    rl.Unlimited()                       # the baseline: no guard, no connection cap
    rl.RateLimit(20, period_s=1.0)       # aiolimiter.AsyncLimiter(20, 1.0) before each request
    rl.ConnectionLimit(10, per_host=0)   # aiohttp.TCPConnector(limit=10, limit_per_host=0)
    rl.Concurrency(5, endpoint="/slow")  # asyncio.Semaphore(5) around each /slow request
    rl.RateLimit(20) + rl.ConnectionLimit(10)   # both

A strategy is an immutable description. The asyncio objects it stands for (limiter,
semaphore, connector limits) are built by :meth:`Strategy.build` inside the running loop,
once per run, so one Experiment can run again and again, in scripts and notebooks.
Without a ``ConnectionLimit`` the session's connector is unlimited (``limit=0``): aiohttp's
default cap of 100 connections would otherwise be a hidden strategy of its own.

Names carry their units: ``_s`` is seconds, ``_per_s`` is per second. ``max_rate`` is
aiolimiter's: requests per ``period_s`` (a count), so ``RateLimit(5, period_s=0.5)`` is
10/s. A few parameters were renamed so; the old keywords still work, with a
DeprecationWarning, and saved results or TOML files with the old keys load as before:
``RateLimit(per_s=)`` and ``SharedRateLimit(per_s=)`` are ``period_s``;
``Adaptive(start_rate=, min_rate=, max_rate=)`` are ``start_rate_per_s``,
``min_rate_per_s``, ``max_rate_per_s``.

Your own strategy: subclass :class:`Strategy` as a frozen dataclass (its fields are its
plain-data form, see :meth:`Strategy.to_dict`) and return a
:class:`~ratelab.client.guards.Guard` from :meth:`Strategy.guard`; see the README.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, ClassVar

from ratelab._renamed import plain_data, renamed
from ratelab._validate import integer, positive_number
from ratelab.errors import ConfigError
from ratelab.experiment.distributions import upper_bound

if TYPE_CHECKING:
    from ratelab.client.guards import Guard
    from ratelab.experiment.distributions import Distribution

__all__ = [
    "AllOf",
    "Combined",
    "Concurrency",
    "ConnectionLimit",
    "HeaderPacing",
    "RateLimit",
    "Strategy",
    "Unlimited",
    "as_strategy",
    "check_cost",
]


@dataclass(frozen=True, slots=True)
class Built:
    """What one run of a strategy uses: guards in order, and the connector's limits."""

    guards: tuple[Guard, ...]
    limit: int  # TCPConnector(limit=...); 0 = unlimited
    limit_per_host: int  # TCPConnector(limit_per_host=...); 0 = unlimited
    retry: Retry | None = None  # how failed attempts are retried (None: never)


class Strategy:
    """Base class. Combine strategies with ``+``; ``repr`` is the label in tables and plots."""

    _types: ClassVar[dict[str, type[Strategy]]] = {}  # every concrete strategy, by name

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("_"):
            return
        taken = Strategy._types.get(cls.__name__)
        if (
            taken is not None
            and taken.__module__.startswith("ratelab.")
            and not cls.__module__.startswith("ratelab.")
        ):  # saved results name their strategies by class name: keep ratelab's own
            raise TypeError(
                f"a Strategy subclass may not be called {cls.__name__!r}: ratelab's "
                f"rl.{cls.__name__} has that name, and saved results find classes by name. "
                "Choose another class name."
            )
        Strategy._types[cls.__name__] = cls

    def __add__(self, other: object) -> Strategy:
        if not isinstance(other, Strategy):
            return NotImplemented
        return Combined((*self.parts, *other.parts))

    @property
    def parts(self) -> tuple[Strategy, ...]:
        """The single strategies this one is made of, in the order they apply."""
        return () if isinstance(self, Unlimited) else (self,)

    def build(self) -> Built:
        """Build the guards and connector limits for one run. Call inside the running loop."""
        guards = tuple(g for g in (part.guard() for part in self.parts) if g is not None)
        retries = [p for p in self.parts if isinstance(p, Retry)]
        return Built(guards, *self.build_limits(), retry=retries[-1] if retries else None)

    def guard(self) -> Guard | None:
        """The gate this strategy puts before each request, built for one run inside the
        running loop (None: it adds no gate). Override it in a custom strategy."""
        return None

    @property
    def steady_rate_per_s(self) -> float | None:
        """The long-run rate this single strategy allows (None: it does not bound the rate)."""
        return None

    # What the strategy bounds, for plots and checks (None: not bounded).
    @property
    def rate_limit_per_s(self) -> float | None:
        """The tightest steady rate any RateLimit part allows, in requests per second."""
        rates = [p.steady_rate_per_s for p in self.parts if p.steady_rate_per_s is not None]
        return min(rates) if rates else None

    def rate_limit_across(self, processes: int) -> float | None:
        """:attr:`rate_limit_per_s` for a run split across ``processes`` processes
        (``rl.run(processes=N)``, ``rl.simulate(clients=N)``): every process has its own
        limiter, so a part allows N times its rate, except a part shared by every process
        (one whose ``most_in_one_second`` says so: ``SharedRateLimit``), which allows its
        rate once."""
        rates = []
        for p in self.parts:
            rate = p.steady_rate_per_s
            if rate is not None:
                most = getattr(p, "most_in_one_second", None)
                rates.append(rate if most is not None and most[1] else rate * processes)
        return min(rates) if rates else None

    @property
    def connection_cap(self) -> int | None:
        """The session-wide connection cap, if any."""
        limit = self.build_limits()[0]
        return limit or None

    @property
    def concurrency_cap(self) -> int | None:
        """The tightest global (not endpoint-scoped) semaphore, if any."""
        caps = [p.n for p in _flat(self) if isinstance(p, Concurrency) and p.endpoint is None]
        return min(caps) if caps else None

    def build_limits(self) -> tuple[int, int]:
        """``(limit, limit_per_host)`` for the TCPConnector; 0 means unlimited."""
        limit = per_host = 0
        for part in self.parts:
            if isinstance(part, ConnectionLimit):
                limit = part.limit if limit == 0 else min(limit, part.limit)
                if part.per_host:
                    per_host = part.per_host if per_host == 0 else min(per_host, part.per_host)
        return limit, per_host

    def to_dict(self) -> dict[str, object]:
        """A plain-data form (for saved results, TOML files and child processes): the class
        name as ``type`` and the dataclass fields; see :func:`as_strategy`. A custom strategy
        gets it by being a dataclass whose fields are plain data (or overrides it)."""
        if isinstance(self, Combined):
            return {"type": "Combined", "parts": [p.to_dict() for p in self.parts]}
        if not dataclasses.is_dataclass(self):
            raise ConfigError(
                "strategy", self,
                f"{type(self).__name__} has no plain-data form: make it a "
                "@dataclass(frozen=True) (its fields are the form) or override to_dict()",
            )  # fmt: skip
        return {
            "type": type(self).__name__,
            **{f.name: getattr(self, f.name) for f in fields(self)},
        }  # type: ignore[arg-type]


@dataclass(frozen=True, repr=False)
class Unlimited(Strategy):
    """No client-side bound at all (and a connector with ``limit=0``)."""

    def __repr__(self) -> str:
        return "Unlimited()"


@renamed(per_s="period_s")
@dataclass(frozen=True, repr=False)
class RateLimit(Strategy):
    """At most ``max_rate`` requests per ``period_s`` seconds: ``aiolimiter.AsyncLimiter``
    (``max_rate`` is a count per period, as in aiolimiter; the rate is
    ``max_rate / period_s`` per second).

    A fresh limiter admits ``max_rate`` at once (its bucket starts empty), so
    ``RateLimit(20)`` sends ~40 requests in its first second; ``RateLimit(1, period_s=0.05)``
    is the burst-free form of 20/s. ``max_rate`` is at least 1 (aiolimiter cannot hand out
    one request from a smaller bucket): 0.5/s is ``RateLimit(1, period_s=2)``. (``per_s=``
    is the deprecated name of ``period_s``.)

    ``unit="tokens"``: ``max_rate`` tokens per ``period_s``, and each request acquires its
    cost (``Experiment(cost=...)``; aiolimiter's ``acquire(amount)``), so
    ``RateLimit(30_000, period_s=60, unit="tokens")`` is 30,000 tokens per minute. The
    Experiment then needs a ``cost`` that never exceeds ``max_rate`` (checked when it is
    built). aiolimiter wakes the smallest waiting request first, so with varied costs a
    large one can wait while smaller ones pass.
    """

    max_rate: float
    period_s: float = 1.0
    unit: str = "requests"

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_rate", positive_number("RateLimit(max_rate)", self.max_rate))
        object.__setattr__(self, "period_s", positive_number("RateLimit(period_s)", self.period_s))
        if self.unit not in RATE_UNITS:
            raise ConfigError(
                "RateLimit(unit)", self.unit, f"must be one of {', '.join(map(repr, RATE_UNITS))}"
            )
        if self.max_rate < 1:  # aiolimiter cannot acquire 1 from a bucket smaller than 1
            raise ConfigError(
                "RateLimit(max_rate)", self.max_rate,
                "must be >= 1: it is a count of requests per period_s, and aiolimiter "
                "refuses to acquire more than that capacity",
                f"For {self.max_rate / self.period_s:g} requests/s use "
                f"RateLimit(1, period_s={self.period_s / self.max_rate:g})",
            )  # fmt: skip

    def guard(self) -> Guard:
        from ratelab.client.guards import LimiterGuard

        return LimiterGuard(self.max_rate, self.period_s, tokens=self.unit == "tokens")

    @property
    def steady_rate_per_s(self) -> float | None:
        # a tokens limit bounds requests/s only through the costs
        return self.max_rate / self.period_s if self.unit == "requests" else None

    @property
    def token_capacity(self) -> float | None:
        """The most tokens one request may cost (``unit="tokens"``: the bucket); else None."""
        return self.max_rate if self.unit == "tokens" else None

    def __repr__(self) -> str:
        per = "" if self.period_s == 1.0 else f", period_s={self.period_s:g}"
        unit = "" if self.unit == "requests" else f", unit={self.unit!r}"
        return f"RateLimit({self.max_rate:g}{per}{unit})"


@dataclass(frozen=True, repr=False)
class ConnectionLimit(Strategy):
    """The session's connection pool:
    ``aiohttp.TCPConnector(limit=limit, limit_per_host=per_host)``."""

    limit: int
    per_host: int = 0

    def __post_init__(self) -> None:
        integer("ConnectionLimit(limit)", self.limit, minimum=1)
        integer("ConnectionLimit(per_host)", self.per_host, minimum=0)

    def __repr__(self) -> str:
        per = f", per_host={self.per_host}" if self.per_host else ""
        return f"ConnectionLimit({self.limit}{per})"


@dataclass(frozen=True, repr=False)
class Concurrency(Strategy):
    """An ``asyncio.Semaphore(n)`` held for the whole request; with ``endpoint=``, only
    requests to that path are guarded (the per-endpoint form)."""

    n: int
    endpoint: str | None = None

    def __post_init__(self) -> None:
        integer("Concurrency(n)", self.n, minimum=1)
        if self.endpoint is not None and (
            not isinstance(self.endpoint, str) or not self.endpoint.startswith("/")
        ):
            raise ConfigError(
                "Concurrency(endpoint)", self.endpoint, "must be None or a path like '/get'"
            )

    def guard(self) -> Guard:
        from ratelab.client.guards import SemaphoreGuard

        return SemaphoreGuard(self.n, self.endpoint)

    def __repr__(self) -> str:
        ep = f", endpoint={self.endpoint!r}" if self.endpoint is not None else ""
        return f"Concurrency({self.n}{ep})"


@dataclass(frozen=True, repr=False)
class TokenBucket(Strategy):
    """A token bucket: ``burst`` tokens, full at the start, refilled at ``rate_per_s``; each
    request takes a token or waits for one. ``TokenBucket(20, burst=1)`` is burst-free."""

    rate_per_s: float
    burst: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "rate_per_s", positive_number("TokenBucket(rate_per_s)", self.rate_per_s)
        )
        burst = positive_number("TokenBucket(burst)", self.burst)
        if burst < 1:
            raise ConfigError("TokenBucket(burst)", self.burst, "must be >= 1 (one request)")
        object.__setattr__(self, "burst", burst)

    def guard(self) -> Guard:
        from ratelab.client.guards import TokenBucketGuard

        return TokenBucketGuard(self.rate_per_s, self.burst)

    @property
    def steady_rate_per_s(self) -> float:
        return self.rate_per_s

    def __repr__(self) -> str:
        return f"TokenBucket({self.rate_per_s:g}, burst={self.burst:g})"


@dataclass(frozen=True, repr=False)
class SlidingWindow(Strategy):
    """At most ``limit`` requests in ANY window of ``window_s`` seconds (an exact sliding
    log): the client-side twin of a strict server counter."""

    limit: int
    window_s: float = 1.0

    def __post_init__(self) -> None:
        integer("SlidingWindow(limit)", self.limit, minimum=1)
        object.__setattr__(
            self, "window_s", positive_number("SlidingWindow(window_s)", self.window_s)
        )

    def guard(self) -> Guard:
        from ratelab.client.guards import SlidingWindowGuard

        return SlidingWindowGuard(self.limit, self.window_s)

    @property
    def steady_rate_per_s(self) -> float:
        return self.limit / self.window_s

    def __repr__(self) -> str:
        w = "" if self.window_s == 1.0 else f", window_s={self.window_s:g}"
        return f"SlidingWindow({self.limit}{w})"


@renamed(start_rate="start_rate_per_s", min_rate="min_rate_per_s", max_rate="max_rate_per_s")
@dataclass(frozen=True, repr=False)
class Adaptive(Strategy):
    """AIMD pacing that reacts to the server: requests are spaced ``1 / rate`` apart, the
    rate (requests per second) starting at ``start_rate_per_s`` and kept within
    ``min_rate_per_s`` .. ``max_rate_per_s``. A 429 or 503 multiplies the rate by
    ``decrease`` (at most once per ``cooldown_s``), every success adds ``increase / rate``
    (about ``+increase`` requests/s per second while all goes well). The rate's history is
    in ``result.meta["adaptive_rate"]``. (``start_rate=``, ``min_rate=``, ``max_rate=`` are
    the deprecated names of the ``_per_s`` parameters.)"""

    start_rate_per_s: float = 10.0
    min_rate_per_s: float = 1.0
    max_rate_per_s: float = 1000.0
    increase: float = 1.0
    decrease: float = 0.5
    cooldown_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("start_rate_per_s", "min_rate_per_s", "max_rate_per_s", "increase",
                     "cooldown_s"):  # fmt: skip
            positive_number(
                f"Adaptive({name})", getattr(self, name), allow_zero=name != "min_rate_per_s"
            )
        low, start, high = self.min_rate_per_s, self.start_rate_per_s, self.max_rate_per_s
        if not low <= start <= high:
            raise ConfigError(
                "Adaptive(start_rate_per_s)", start,
                f"must lie between min_rate_per_s={low:g} and max_rate_per_s={high:g}",
            )  # fmt: skip
        d = positive_number("Adaptive(decrease)", self.decrease)
        if d >= 1:
            raise ConfigError("Adaptive(decrease)", self.decrease, "must be in (0, 1)")

    def guard(self) -> Guard:
        from ratelab.client.guards import AdaptiveGuard

        return AdaptiveGuard(
            self.start_rate_per_s, minimum=self.min_rate_per_s, maximum=self.max_rate_per_s,
            increase=self.increase, decrease=self.decrease, cooldown_s=self.cooldown_s,
            backoff_statuses=frozenset({429, 503}),
        )  # fmt: skip

    @property
    def steady_rate_per_s(self) -> float | None:
        return None  # it floats: that is the point

    def __repr__(self) -> str:
        return (
            f"Adaptive(start_rate_per_s={self.start_rate_per_s:g}, "
            f"max_rate_per_s={self.max_rate_per_s:g})"
        )


#: What a client-side ``RateLimit`` counts: a request each, or each request's cost.
RATE_UNITS = ("requests", "tokens")

RETRY_STATUSES = (429, 500, 502, 503, 504)
#: ``Retry(jitter=...)``: the random part of each backoff.
JITTERS = ("full", "equal", None)
#: The most attempts a request can have: the records' ``attempt`` column is an int16.
MAX_ATTEMPTS = 32_767


@dataclass(frozen=True, repr=False)
class Retry(Strategy):
    """Retry failed attempts: up to ``max_attempts`` in all, after an exponential backoff.
    Retried: the ``statuses`` and every exception but cancellation. Each attempt is its
    own row (``attempt`` 1, 2, ...); for a retry, dequeued_s → ready_s is the backoff.

    The backoff before attempt ``a + 1`` draws on ``cap = min(max_backoff_s, backoff_s *
    2**(a-1))``: ``jitter="full"`` (the default) waits ``u * cap``, ``"equal"`` waits
    ``cap/2 + u * cap/2``, ``None`` waits ``cap`` (``u`` uniform in [0, 1), seeded).
    ``jitter=True`` / ``False`` (the old values) mean ``"full"`` / ``None``.

    With ``honor_retry_after`` a server's ``Retry-After`` sets the wait instead, plus the
    jitter's random part over a ``span`` (``"full"``: ``cap``; ``"equal"``: ``cap/2``;
    ``None``: nothing), so the workers refused together do not all come back in the same
    instant: their returns spread over ``span`` after the Retry-After. ``max_backoff_s``
    bounds every wait, a server's too (a bogus ``Retry-After: inf`` cannot stall a run): a
    Retry-After beyond ``max_backoff_s - span`` counts as that, so the spread stays."""

    max_attempts: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 10.0
    jitter: str | None = "full"
    honor_retry_after: bool = True
    statuses: tuple[int, ...] = RETRY_STATUSES

    def __post_init__(self) -> None:
        integer("Retry(max_attempts)", self.max_attempts, minimum=1, maximum=MAX_ATTEMPTS)
        positive_number("Retry(backoff_s)", self.backoff_s, allow_zero=True)
        positive_number("Retry(max_backoff_s)", self.max_backoff_s, allow_zero=True)
        if isinstance(self.jitter, bool):  # the old values: True = "full", False = None
            object.__setattr__(self, "jitter", "full" if self.jitter else None)
        if self.jitter not in JITTERS:
            raise ConfigError(
                "Retry(jitter)", self.jitter, "must be 'full', 'equal' or None (True/False: "
                "'full'/None)",
            )  # fmt: skip
        if not isinstance(self.honor_retry_after, bool):
            raise ConfigError(
                "Retry(honor_retry_after)", self.honor_retry_after, "must be True or False"
            )
        try:
            statuses = tuple(int(x) for x in self.statuses)  # type: ignore[union-attr]
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError("Retry(statuses)", self.statuses, "must be HTTP status codes") from e
        if any(isinstance(x, bool) or x != int(x) for x in self.statuses):  # 500.7 is no code
            raise ConfigError("Retry(statuses)", self.statuses, "must be whole HTTP status codes")
        if not all(100 <= x <= 599 for x in statuses):
            raise ConfigError("Retry(statuses)", self.statuses, "must be codes in 100..599")
        object.__setattr__(self, "statuses", statuses)

    def should_retry(self, status: int, error: str | None) -> bool:
        """Whether an attempt with this outcome is retried (attempts left aside)."""
        return error is not None or status in self.statuses

    def backoff(self, attempt: int, retry_after_s: float | None, u: float) -> float:
        """Seconds to wait before attempt ``attempt + 1``; ``u`` is a uniform draw in [0, 1)."""
        cap = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        jitter = self.jitter
        if self.honor_retry_after and retry_after_s is not None:
            # a server's wait, but never beyond max_backoff_s (Retry-After: inf, year 9999),
            # plus the jitter's random part: the refused do not all return at once
            if jitter is None:
                return min(retry_after_s, self.max_backoff_s)
            span = cap if jitter == "full" else cap / 2  # <= max_backoff_s
            return min(retry_after_s, self.max_backoff_s - span) + u * span
        if jitter is None:
            return cap
        return cap * u if jitter == "full" else cap / 2 + cap * u / 2

    def __repr__(self) -> str:
        parts = [f"max_attempts={self.max_attempts}", f"backoff_s={self.backoff_s:g}"]
        if not self.honor_retry_after:
            parts.append("honor_retry_after=False")
        if self.jitter != "full":
            parts.append(f"jitter={self.jitter!r}")
        return f"Retry({', '.join(parts)})"


@dataclass(frozen=True, repr=False, init=False)
class AllOf(Strategy):
    """Several limits taken together, atomically: ``rl.AllOf(rl.RateLimit(500,
    period_s=60), rl.RateLimit(30_000, period_s=60, unit="tokens"), rl.Concurrency(100))``
    waits until EVERY part has room for the request and then takes them all at once; it
    never holds one part while it waits for another (``a + b`` takes ``a``, then waits for
    ``b`` holding ``a``: a request slot or a connection slot spent while the request waits
    for tokens). Parts: ``RateLimit`` (either unit), ``Concurrency``, ``TokenBucket``,
    ``SlidingWindow``, each built for this AllOf alone; waiters go first come, first served.
    Combine anything else (``Retry``, ``ConnectionLimit``, ``Adaptive``) with ``+``."""

    limits: tuple[Strategy, ...]

    def __init__(self, *limits: Strategy) -> None:
        flat: list[Strategy] = []
        for part in limits:
            if isinstance(part, AllOf):
                flat.extend(part.limits)
            elif isinstance(part, RateLimit | Concurrency | TokenBucket | SlidingWindow):
                flat.append(part)
            else:
                raise ConfigError(
                    "AllOf", part,
                    "takes rl.RateLimit, rl.Concurrency, rl.TokenBucket and rl.SlidingWindow "
                    "(limits that can say whether they have room before taking it); combine "
                    "other strategies with +",
                )  # fmt: skip
        if not flat:
            raise ConfigError("AllOf", limits, "needs at least one limit")
        object.__setattr__(self, "limits", tuple(flat))

    def guard(self) -> Guard:
        from ratelab.client.limits.all_of import AllOfGuard

        return AllOfGuard(tuple(p.guard() for p in self.limits))  # type: ignore[misc]

    @property
    def steady_rate_per_s(self) -> float | None:
        rates = [p.steady_rate_per_s for p in self.limits if p.steady_rate_per_s is not None]
        return min(rates) if rates else None

    def to_dict(self) -> dict[str, object]:
        return {"type": "AllOf", "limits": [p.to_dict() for p in self.limits]}

    def __repr__(self) -> str:
        return f"AllOf({', '.join(repr(p) for p in self.limits)})"


@dataclass(frozen=True, repr=False)
class HeaderPacing(Strategy):
    """Pacing from what the server says: after every response, the remaining quota (times
    ``1 - safety``) is spread evenly over the time to its reset, for each quota the
    response announces, in any header style (IETF ``RateLimit``/``RateLimit-Policy``, the
    older ``RateLimit-Remaining``/``-Reset``, OpenAI, Anthropic, GitHub:
    :func:`ratelab.protocol.header_reading.read_headers`); the tightest quota sets the
    spacing. A tokens quota spaces requests by their cost. A refusal (429/503) with a
    ``Retry-After`` (or a quota at zero) pauses EVERY worker until then, not only the one
    refused. Until the first response arrives it does not hold requests back."""

    safety: float = 0.1

    def __post_init__(self) -> None:
        safety = positive_number("HeaderPacing(safety)", self.safety, allow_zero=True)
        if safety >= 1:
            raise ConfigError(
                "HeaderPacing(safety)", self.safety, "must be in [0, 1): the share of the "
                "remaining quota left unused",
            )  # fmt: skip
        object.__setattr__(self, "safety", safety)

    def guard(self) -> Guard:
        from ratelab.client.limits.header_pacing import HeaderPacingGuard

        return HeaderPacingGuard(safety=self.safety)

    def __repr__(self) -> str:
        return f"HeaderPacing(safety={self.safety:g})"


def _flat(strategy: Strategy) -> list[Strategy]:
    """The single limits of a strategy, with AllOf's members in place of the AllOf."""
    return [q for p in strategy.parts for q in (p.limits if isinstance(p, AllOf) else (p,))]


def check_cost(strategy: Strategy, cost: Distribution | None) -> None:
    """Refuse, before a run, a cost that a tokens bucket of ``strategy`` could not hold: no
    ``cost`` at all, a cost above the bucket's capacity, or a distribution with no upper
    bound (Exponential, LogNormal) against a finite bucket."""
    buckets = [p for p in _flat(strategy) if getattr(p, "token_capacity", None) is not None]
    if not buckets:
        return
    tightest = min(buckets, key=lambda p: p.token_capacity)  # type: ignore[attr-defined]
    capacity: float = tightest.token_capacity  # type: ignore[attr-defined]
    if cost is None:
        raise ConfigError(
            "cost", None,
            f"{tightest!r} counts tokens: give the Experiment a cost per request, e.g. "
            "cost=rl.Uniform(200, 2000) or cost=500",
        )  # fmt: skip
    bound = upper_bound(cost)
    if bound == math.inf:
        raise ConfigError(
            "cost", cost,
            f"has no upper bound, so a request could cost more than the {capacity:g} tokens "
            f"{tightest!r} holds: use a bounded cost, e.g. rl.Uniform(low, {capacity:g})",
        )  # fmt: skip
    if round(bound) > capacity:
        raise ConfigError(
            "cost", cost,
            f"can cost up to {round(bound):g} tokens, more than the {capacity:g} that "
            f"{tightest!r} holds: every cost must be at most {capacity:g}",
        )  # fmt: skip


@dataclass(frozen=True, repr=False)
class Combined(Strategy):
    """Several strategies applied together, guards in the order written."""

    members: tuple[Strategy, ...]

    @property
    def parts(self) -> tuple[Strategy, ...]:
        return self.members

    def __repr__(self) -> str:
        return " + ".join(repr(p) for p in self.parts) if self.parts else "Unlimited()"


def as_strategy(value: object, *, parameter: str = "strategy") -> Strategy:
    """Accept a Strategy, None (Unlimited) or the plain-data form from :meth:`Strategy.to_dict`
    (also a list of such dicts, combined)."""
    if value is None:
        return Unlimited()
    if isinstance(value, Strategy):
        return value
    if isinstance(value, list | tuple) and value:
        out: Strategy = Unlimited()
        for v in value:
            out = out + as_strategy(v, parameter=parameter)
        return out
    if isinstance(value, dict):
        data = dict(value)
        kind = data.pop("type", None)
        if kind == "Combined":
            parts = data.get("parts", [])
            if not isinstance(parts, list | tuple):
                raise ConfigError(
                    f"{parameter}.parts", parts, "must be a list of strategies (plain data)"
                )
            return as_strategy(list(parts), parameter=parameter)
        if kind == "AllOf":
            limits = data.get("limits", [])
            if not isinstance(limits, list | tuple):
                raise ConfigError(
                    f"{parameter}.limits", limits, "must be a list of limits (plain data)"
                )
            return AllOf(*(as_strategy(p, parameter=f"{parameter}.limits") for p in limits))
        cls = Strategy._types.get(str(kind))
        if cls is None:
            raise ConfigError(
                f"{parameter}.type", kind, f"must be one of {', '.join(Strategy._types)}",
                "A custom strategy is known once the module that defines its class is imported",
            )  # fmt: skip
        data = plain_data(cls, data, parameter)  # old parameter names, silently
        try:
            return cls(**data)
        except TypeError as e:
            raise ConfigError(parameter, value, f"{kind} takes {_parameters(cls)}") from e
    raise ConfigError(
        parameter, value, "must be a strategy such as rl.RateLimit(20) or rl.ConnectionLimit(10)"
    )


def _parameters(cls: type) -> list[str]:
    """The keyword arguments ``cls`` takes (a dataclass: its init fields)."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in fields(cls) if f.init]
    return [p for p in inspect.signature(cls).parameters if p not in ("args", "kwargs")]
