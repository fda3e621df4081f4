"""The response headers one response carries, in each header style a server can speak.

:func:`format_headers` writes a response's quotas (:class:`~ratelab.protocol.quota.Quota`) as
one style's headers; :func:`ratelab.protocol.header_reading.read_headers` reads any of them
back. Every rounding is towards waiting longer: a remaining count is rounded down, a reset or
a ``Retry-After`` up, so a client that waits what the headers say is never early.

``"ietf"``
    The IETF draft's structured fields (draft-ietf-httpapi-ratelimit-headers; written from the
    working group's repository, github:ietf-wg-httpapi/ratelimit-headers, as of September
    2025 (draft 10's text); draft 12 itself was not available to check against), section
    "RateLimit-Policy Field":

        The "RateLimit-Policy" response header field is a non-empty List of Quota Policy
        Items. The Item value MUST be a String. [...] q: The REQUIRED "q" parameter
        indicates the quota allocated by this policy measured in quota units. qu: The
        OPTIONAL "qu" parameter value conveys the quota units associated to the "q"
        parameter. The default quota unit is "requests". w: The OPTIONAL "w" parameter
        value conveys a time window. [...] The time window MUST be a non-negative, non-zero,
        Integer value expressing an interval in seconds [...] Sub-second precision is not
        supported.

    and section "RateLimit Field": a List of Service Limit Items, each the policy's name with
    ``r`` (REQUIRED, the remaining quota units, a non-negative Integer) and ``t`` (OPTIONAL,
    seconds until additional quota is made available, a non-negative Integer). So: one
    Item per quota in each field, ``RateLimit-Policy: "requests";q=60;w=60,
    "tokens";q=30000;qu="tokens";w=60`` and ``RateLimit: "requests";r=59;t=1,
    "tokens";r=29500;t=1``. ``w`` is the window rounded up to whole seconds (at least 1);
    a concurrency quota has no ``w`` and no ``t``. Units: ``"requests"`` is the default
    (``qu`` left out), a concurrency quota is ``qu="concurrent-requests"`` (registered by
    the draft); ratelab's tokens are ``qu="tokens"``, a value the draft's quota-unit
    registry does not (yet) hold: the draft registers ``requests``, ``content-bytes`` and
    ``concurrent-requests`` only and asks for a specification for any other, so a strict
    client may ignore a tokens quota. On a refusal the body is a problem-details document
    (:func:`problem_body`, section "Problem Types", "Quota Exceeded").
``"ietf-06"``
    ``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (delta seconds) of the
    most restrictive quota (the lowest remaining share of its limit; of equals, the latest
    reset), as draft 06 had them and the LocalServer sent them before.
``"openai"``
    ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; resets as Go durations
    (``1s``, ``6m0s``, ``20ms``, ``1.5s``), rounded up to the millisecond. One quota per unit
    (the most restrictive of that unit); concurrency quotas are not announced.
``"anthropic"``
    ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,
    reset}``; resets as RFC 3339 dates (UTC, whole seconds rounded up). A tokens quota
    named ``input-tokens`` or ``output-tokens`` is announced under that name, another
    tokens quota as ``tokens``.
``"github"``
    ``x-ratelimit-limit``, ``-remaining``, ``-used``, ``-reset`` (UTC epoch seconds, rounded
    up) and ``-resource`` (the quota's name) of the first quota given: the primary one
    (GitHub announces the resource's primary limit, never its secondary limits).

With ``retry_after_s`` (a refusal) every style, and ``None`` (no rate-limit headers at
all), adds ``Retry-After`` (whole seconds, rounded up, at least 1: RFC 9110's
delta-seconds) and ``X-Retry-After-Ms`` (milliseconds, rounded up; ratelab's own, for
sub-second waits).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Sequence

from ratelab.protocol.quota import Quota

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "QUOTA_EXCEEDED",
    "STYLES",
    "format_headers",
    "go_duration",
    "problem_body",
]

#: The header styles a server can speak (and ``None``: none of them).
STYLES = ("ietf", "ietf-06", "openai", "anthropic", "github")

#: The problem type the IETF draft defines for a refused request (section "Quota Exceeded").
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
#: The media type of a problem-details body (RFC 9457).
PROBLEM_CONTENT_TYPE = "application/problem+json"

_EPS = 1e-9  # float noise above a whole number is not rounded up to the next one
_IETF_UNITS = {"requests": None, "tokens": "tokens", "concurrent": "concurrent-requests"}


def _up(x: float, eps: float = _EPS) -> int:
    """``ceil(x)`` (>= 0), ignoring float noise up to ``eps`` above a whole number."""
    return max(0, math.ceil(x - eps))


def _down(x: float) -> int:
    """``floor(x)`` (>= 0), ignoring float noise just below a whole number."""
    return max(0, math.floor(x + 1e-6))


@functools.lru_cache(maxsize=256)
def _sf_string(s: str) -> str:
    """A Structured Field String (RFC 9651 section 3.3.3): printable ASCII, quoted."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in s)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def go_duration(seconds: float) -> str:
    """A duration as Go's ``time.Duration.String`` writes it, to the millisecond, rounded
    up: ``0.02`` -> ``"20ms"``, ``1`` -> ``"1s"``, ``360`` -> ``"6m0s"``, ``1.5`` ->
    ``"1.5s"``, ``3600`` -> ``"1h0m0s"``, ``0`` -> ``"0s"``."""
    ms = _up(seconds * 1000, 1e-6)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}" + (f".{rest % 1000:03d}".rstrip("0") if rest % 1000 else "")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _rfc3339(epoch_s: float) -> str:
    """``2026-12-01T11:40:05Z``: UTC, whole seconds (rounded up)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_up(epoch_s, 1e-6)))


def _tightest(quotas: Sequence[Quota]) -> Quota:
    """The most restrictive quota: the lowest remaining share of its limit; of equals, the
    one that resets last."""
    if len(quotas) == 1:
        return quotas[0]
    return min(
        quotas,
        key=lambda q: (q.remaining / q.limit if q.limit > 0 else 0.0, -(q.reset_s or 0.0)),
    )


@functools.lru_cache(maxsize=256)
def _policy_item(name: str, limit: float, unit: str, window_s: float | None) -> str:
    """One quota's ``RateLimit-Policy`` Item (the same in every response: cached)."""
    item = f"{_sf_string(name)};q={_down(limit)}"
    qu = _IETF_UNITS.get(unit, unit)
    if qu is not None:
        item += f";qu={_sf_string(qu)}"
    if window_s is not None and unit != "concurrent":
        item += f";w={max(1, _up(window_s))}"
    return item


def _ietf(quotas: Sequence[Quota]) -> dict[str, str]:
    policy, state = [], []
    for q in quotas:
        policy.append(_policy_item(q.name, q.limit, q.unit, q.window_s))
        now = f"{_sf_string(q.name)};r={_down(q.remaining)}"
        if q.reset_s is not None:
            now += f";t={_up(q.reset_s)}"
        state.append(now)
    return {"RateLimit-Policy": ", ".join(policy), "RateLimit": ", ".join(state)}


def _ietf_06(quotas: Sequence[Quota]) -> dict[str, str]:
    q = _tightest(quotas)
    out = {"RateLimit-Limit": str(_down(q.limit)), "RateLimit-Remaining": str(_down(q.remaining))}
    if q.reset_s is not None:
        out["RateLimit-Reset"] = str(_up(q.reset_s))
    return out


def _openai(quotas: Sequence[Quota]) -> dict[str, str]:
    out: dict[str, str] = {}
    for unit in ("requests", "tokens"):
        of_unit = [q for q in quotas if q.unit == unit]
        if not of_unit:
            continue
        q = _tightest(of_unit)
        out[f"x-ratelimit-limit-{unit}"] = str(_down(q.limit))
        out[f"x-ratelimit-remaining-{unit}"] = str(_down(q.remaining))
        if q.reset_s is not None:
            out[f"x-ratelimit-reset-{unit}"] = go_duration(q.reset_s)
    return out


def _anthropic_name(q: Quota) -> str | None:
    if q.unit == "requests":
        return "requests"
    if q.unit == "tokens":
        return q.name if q.name in ("input-tokens", "output-tokens") else "tokens"
    return None


def _anthropic(quotas: Sequence[Quota], now_epoch_s: float) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("requests", "tokens", "input-tokens", "output-tokens"):
        named = [q for q in quotas if _anthropic_name(q) == name]
        if not named:
            continue
        q = _tightest(named)
        out[f"anthropic-ratelimit-{name}-limit"] = str(_down(q.limit))
        out[f"anthropic-ratelimit-{name}-remaining"] = str(_down(q.remaining))
        if q.reset_s is not None:
            out[f"anthropic-ratelimit-{name}-reset"] = _rfc3339(now_epoch_s + q.reset_s)
    return out


def _github(quotas: Sequence[Quota], now_epoch_s: float) -> dict[str, str]:
    q = quotas[0]
    limit, remaining = _down(q.limit), _down(q.remaining)
    out = {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-used": str(max(0, limit - remaining)),
    }
    if q.reset_s is not None:
        out["x-ratelimit-reset"] = str(_up(now_epoch_s + q.reset_s, 1e-6))
    out["x-ratelimit-resource"] = q.name
    return out


def format_headers(
    style: str | None,
    quotas: Sequence[Quota],
    *,
    now_epoch_s: float,
    retry_after_s: float | None = None,
) -> dict[str, str]:
    """The rate-limit headers of one response in ``style`` (one of :data:`STYLES`, or None:
    none), announcing ``quotas``; ``now_epoch_s`` (:func:`ratelab.protocol.wall_clock.epoch_s`)
    anchors the absolute resets; ``retry_after_s`` (a refusal) adds ``Retry-After`` and
    ``X-Retry-After-Ms``. Raises ValueError for an unknown style (the server checks the
    style when it is configured)."""
    out: dict[str, str]
    if style is None or not quotas:
        out = {}
    elif style == "ietf":
        out = _ietf(quotas)
    elif style == "ietf-06":
        out = _ietf_06(quotas)
    elif style == "openai":
        out = _openai(quotas)
    elif style == "anthropic":
        out = _anthropic(quotas, now_epoch_s)
    elif style == "github":
        out = _github(quotas, now_epoch_s)
    else:
        raise ValueError(f"unknown header style {style!r}: one of {', '.join(STYLES)} or None")
    if retry_after_s is not None:
        out["Retry-After"] = str(max(1, _up(retry_after_s, 1e-6)))
        out["X-Retry-After-Ms"] = str(_up(retry_after_s * 1000, 1e-6))
    return out


def problem_body(style: str | None, violated: Sequence[str]) -> tuple[str, str] | None:
    """The body of a refusal in ``style``: ``(content type, text)``, or None for the plain
    one. ``"ietf"`` answers with the draft's problem-details document (section "Quota
    Exceeded"): ``type`` :data:`QUOTA_EXCEEDED`, ``title``, ``status`` 429 and
    ``violated-policies`` (the refusing quotas' names)."""
    return _problem_body(style, tuple(violated))


@functools.lru_cache(maxsize=256)
def _problem_body(style: str | None, violated: tuple[str, ...]) -> tuple[str, str] | None:
    if style != "ietf":
        return None
    doc = {
        "type": QUOTA_EXCEEDED,
        "title": "Request cannot be satisfied as assigned quota has been exceeded",
        "status": 429,
        "violated-policies": list(violated),
    }
    return PROBLEM_CONTENT_TYPE, json.dumps(doc)
