"""Server-side policies for :class:`~ratelab.server.local.LocalServer`: when the server says no.

    rl.ServerRateLimit(20, 1.0)                              # 20 requests per 1 s window
    rl.ServerRateLimit(20, 1.0, algorithm="sliding_window")  # ... per any 1 s span
    rl.ServerRateLimit(5, 1.0, algorithm="gcra", routes="/get")   # only /get is limited
    rl.Faults(error_rate=0.05, reset_rate=0.01, seed=1)      # seeded injected failures

A :class:`ServerRateLimit` is an immutable description; :meth:`ServerRateLimit.build` makes
the stateful limiter one server run uses. A limiter is a small exact class whose
``decide(now)`` reads time only from its argument (the server passes ``time.monotonic()``),
so it can be tested on hand-picked timestamps:

    >>> lim = FixedWindowLimiter(3, 1.0)
    >>> [lim.decide(t).allowed for t in (0, 0.1, 0.2, 0.3, 1.0)]
    [True, True, True, False, True]

The four algorithms, each allowing at most ``limit`` requests at one instant:

``"fixed_window"``
    A counter that opens with the first request and lasts ``window_s`` (the INCR + EXPIRE
    counter most APIs use); windows are not aligned to clock boundaries, so up to
    ``2 * limit`` requests can pass in ``window_s`` across the edge of two windows.
``"sliding_window"``
    An exact sliding log: a request is allowed if fewer than ``limit`` allowed requests
    arrived in the last ``window_s`` (a request at ``t`` stops counting at ``t + window_s``).
    Not the sliding-window *counter* approximation. Memory: at most ``limit`` timestamps.
``"token_bucket"``
    A bucket of ``limit`` tokens (full at the start) refilled continuously at
    ``limit / window_s`` tokens per second; a request takes one token.
``"gcra"``
    The generic cell rate algorithm (one theoretical arrival time, TAT): emission interval
    ``T = window_s / limit``, burst tolerance ``limit`` cells, i.e. a request at ``now`` is
    allowed if ``max(TAT, now) + T - now <= window_s``. It admits exactly what
    ``"token_bucket"`` with the same numbers admits (GCRA is the leaky bucket as a meter),
    stored as a single timestamp instead of a level and a time.

Each algorithm charges an amount, exactly (``decide(now, amount)``: 1 per request; a
request's tokens for a ``unit="tokens"`` limit), and can give part of it back
(``refund``); ``unit="concurrent"`` limits count requests in progress
(:class:`ConcurrencyLimiter`). Only allowed requests count against a limit: a rejected
request costs the client nothing (and with several limits, the LocalServer checks them all
before it charges any: :meth:`ratelab.server.decide.Policy.admit`). Every decision carries
what the response headers report (:mod:`ratelab.protocol.header_styles`): ``remaining``
(units that could still pass now), ``reset_s`` (seconds until the full quota is back if
nothing else arrives) and ``retry_after_s`` (0 when allowed; else seconds until the request
would pass; ``inf`` if it never can, costing more than ``limit``). Times within
:data:`EPS_S` of each other count as equal, so float rounding of ``time.monotonic()``
readings never decides a boundary; the tolerance is always time, never units (a slow
token bucket is early by at most EPS_S, and a remaining count at a large clock value is
not one short).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ratelab._validate import integer, positive_number
from ratelab.errors import ConfigError
from ratelab.protocol.header_styles import format_headers
from ratelab.protocol.quota import Quota

__all__ = [
    "ALGORITHMS",
    "UNITS",
    "ConcurrencyLimiter",
    "Decision",
    "Faults",
    "FixedWindowLimiter",
    "GCRALimiter",
    "Limiter",
    "ServerRateLimit",
    "SlidingWindowLimiter",
    "TokenBucketLimiter",
    "as_faults",
    "as_rate_limits",
    "check_names",
    "parse_rate_limit",
    "rate_limit_headers",
]

EPS_S = 1e-6  # times (and token / cell counts) closer than this are equal
ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket", "gcra")


@dataclass(frozen=True, slots=True)
class Decision:
    """One rate-limit verdict. ``remaining``: requests that could still pass now;
    ``reset_s``: seconds until the whole quota is back; ``retry_after_s``: 0 if allowed,
    else seconds until a request would be allowed."""

    allowed: bool
    remaining: int
    reset_s: float
    retry_after_s: float


def rate_limit_headers(limit: int, decision: Decision) -> dict[str, str]:
    """One limit's ``decision`` as the ``"ietf-06"`` header style writes it
    (:func:`ratelab.protocol.header_styles.format_headers`): ``RateLimit-Limit``,
    ``RateLimit-Remaining``, ``RateLimit-Reset`` (whole seconds, rounded up) and, when
    denied, ``Retry-After`` (whole seconds, rounded up, at least 1, as RFC 9110 has it in
    delta-seconds) and ``X-Retry-After-Ms`` (milliseconds, rounded up)."""
    quota = Quota("ratelimit", limit, decision.remaining, decision.reset_s)
    retry = None if decision.allowed else decision.retry_after_s
    return format_headers("ietf-06", [quota], now_epoch_s=0.0, retry_after_s=retry)


# --- the algorithms ------------------------------------------------------------------------


class Limiter:
    """A stateful rate limiter: ``decide(now, amount)`` admits or rejects one request
    arriving at ``now`` (seconds on any clock that never goes back; an earlier reading than
    one already seen is treated as that one) that costs ``amount`` units (1 for a request;
    its tokens for a tokens quota; 0 passes whenever nothing is owed). ``peek(now, amount)``
    says what ``decide`` would, changing nothing that matters (used to check several limits
    before any of them counts the request). ``refund(now, amount, charged_at)`` gives back
    part of what an admitted request at ``charged_at`` was charged. A request costing more
    than ``limit`` can never pass: it is refused with ``retry_after_s = inf``."""

    __slots__ = ("_now", "limit", "window_s")

    def __init__(self, limit: int, window_s: float) -> None:
        name = type(self).__name__
        self.limit = integer(f"{name}(limit)", limit, minimum=1)
        self.window_s = positive_number(f"{name}(window_s)", window_s)
        self._now = -math.inf

    def decide(self, now: float, amount: float = 1) -> Decision:
        """Admit (and count) or reject one request costing ``amount`` arriving at ``now``."""
        return self._decide(self._clock(now), float(amount), True)

    def peek(self, now: float, amount: float = 1) -> Decision:
        """What :meth:`decide` would answer at ``now``, without counting the request."""
        return self._decide(self._clock(now), float(amount), False)

    def refund(self, now: float, amount: float, charged_at: float) -> None:
        """Give back ``amount`` of what a request admitted at ``charged_at`` was charged."""
        if amount > 0:
            self._refund(self._clock(now), float(amount), float(charged_at))

    def _clock(self, now: float) -> float:
        now = float(now)
        if now > self._now:
            self._now = now
        return self._now

    def _decide(self, now: float, amount: float, consume: bool) -> Decision:
        raise NotImplementedError

    def _refund(self, now: float, amount: float, charged_at: float) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.limit}, {self.window_s!r})"


class FixedWindowLimiter(Limiter):
    """``limit`` units per window; a window opens with the first request after the last
    one closed and lasts ``window_s``."""

    __slots__ = ("_count", "_end")

    def __init__(self, limit: int, window_s: float) -> None:
        super().__init__(limit, window_s)
        self._end = -math.inf
        self._count = 0.0

    def _decide(self, now: float, amount: float, consume: bool) -> Decision:
        if now >= self._end - EPS_S:  # no open window: this request opens one
            end, count = now + self.window_s, 0.0
        else:
            end, count = self._end, self._count
        if count + amount > self.limit + EPS_S:
            retry = end - now if amount <= self.limit else math.inf
            return Decision(False, _floor(self.limit - count), end - now, retry)
        if consume:
            self._end, self._count = end, count + amount
        return Decision(True, _floor(self.limit - count - amount), end - now, 0.0)

    def _refund(self, now: float, amount: float, charged_at: float) -> None:
        if charged_at >= self._end - self.window_s - EPS_S and now < self._end - EPS_S:
            self._count = max(0.0, self._count - amount)  # still the window it was charged in


class SlidingWindowLimiter(Limiter):
    """At most ``limit`` units admitted in any ``window_s`` span (an exact sliding log)."""

    __slots__ = ("_amounts", "_expiry", "_used")

    def __init__(self, limit: int, window_s: float) -> None:
        super().__init__(limit, window_s)
        self._expiry: deque[float] = deque()  # when each counted request stops counting
        self._amounts: deque[float] = deque()  # ... and what it counts
        self._used = 0.0

    def _decide(self, now: float, amount: float, consume: bool) -> Decision:
        expiry, amounts = self._expiry, self._amounts
        while expiry and expiry[0] <= now + EPS_S:  # time only moves on: safe in peek too
            expiry.popleft()
            self._used -= amounts.popleft()
        if not expiry:
            self._used = 0.0  # no float drift left behind
        used = self._used
        if used + amount > self.limit + EPS_S:
            if amount > self.limit:
                retry = math.inf
            else:  # until enough of the oldest expire
                need, freed, retry = used + amount - self.limit, 0.0, 0.0
                for t, a in zip(expiry, amounts, strict=True):
                    freed += a
                    retry = t - now
                    if freed >= need - EPS_S:
                        break
            reset = expiry[-1] - now if expiry else 0.0
            return Decision(False, _floor(self.limit - used), reset, retry)
        if consume and amount > 0:
            expiry.append(now + self.window_s)
            amounts.append(amount)
            self._used = used + amount
        reset = self.window_s if amount > 0 or not expiry else expiry[-1] - now
        return Decision(True, _floor(self.limit - used - amount), reset, 0.0)

    def _refund(self, now: float, amount: float, charged_at: float) -> None:
        target = charged_at + self.window_s
        for i in range(len(self._expiry) - 1, -1, -1):  # the newest first: usually the last
            t = self._expiry[i]
            if abs(t - target) <= EPS_S:
                back = min(amount, self._amounts[i])
                self._amounts[i] -= back
                self._used -= back
                return
            if t < target - EPS_S:
                return  # already expired: nothing to give back


class TokenBucketLimiter(Limiter):
    """A bucket of ``limit`` tokens, full at first, refilled at ``limit / window_s`` per
    second; a request takes ``amount`` tokens. A request short of its tokens by less than
    :data:`EPS_S` seconds of refill passes (the tolerance is time, as everywhere here, so a
    slow bucket is not early by more than EPS_S)."""

    __slots__ = ("_last", "_tokens", "rate")

    def __init__(self, limit: int, window_s: float) -> None:
        super().__init__(limit, window_s)
        self.rate = self.limit / self.window_s  # tokens per second
        self._tokens = float(self.limit)
        self._last = -math.inf

    def _level(self, now: float) -> float:
        if now > self._last:
            return min(float(self.limit), self._tokens + (now - self._last) * self.rate)
        return self._tokens

    def _decide(self, now: float, amount: float, consume: bool) -> Decision:
        cap, rate = self.limit, self.rate
        tokens = self._level(now)
        if (amount - tokens) / rate > EPS_S:
            retry = (amount - tokens) / rate if amount <= cap else math.inf
            return Decision(False, _floor(tokens), (cap - tokens) / rate, retry)
        tokens = max(0.0, tokens - amount)
        if consume:
            self._tokens, self._last = tokens, now
        return Decision(True, _floor(tokens), (cap - tokens) / rate, 0.0)

    def _refund(self, now: float, amount: float, charged_at: float) -> None:
        self._tokens, self._last = min(float(self.limit), self._level(now) + amount), now


class GCRALimiter(Limiter):
    """The generic cell rate algorithm: emission interval ``window_s / limit``, burst
    tolerance ``limit`` cells (``limit`` requests at one instant); a request costing
    ``amount`` is ``amount`` cells."""

    __slots__ = ("_tat", "interval_s")

    def __init__(self, limit: int, window_s: float) -> None:
        super().__init__(limit, window_s)
        self.interval_s = self.window_s / self.limit  # the emission interval T
        self._tat = -math.inf  # the theoretical arrival time of the next request

    def _decide(self, now: float, amount: float, consume: bool) -> Decision:
        t, tau = self.interval_s, self.window_s
        tat = max(self._tat, now)
        new_tat = tat + amount * t
        if new_tat - now > tau + EPS_S:
            retry = new_tat - tau - now if amount <= self.limit else math.inf
            return Decision(False, _cells(tau - (tat - now), t), tat - now, retry)
        if consume:
            self._tat = new_tat
        return Decision(True, _cells(tau - (new_tat - now), t), new_tat - now, 0.0)

    def _refund(self, now: float, amount: float, charged_at: float) -> None:
        if self._tat > now:
            self._tat = max(now, self._tat - amount * self.interval_s)


def _floor(units: float) -> int:
    """Whole units left (>= 0), ignoring float noise just below a whole number."""
    return max(0, math.floor(units + 1e-9 * max(1.0, abs(units))))


def _cells(room_s: float, interval_s: float) -> int:
    """Whole cells in ``room_s`` seconds of burst room: the tolerance is EPS_S of *time*,
    so the float error of clock readings far from 0 (``5e6`` s: ~1e-9 s) never costs a
    cell (it did when the tolerance was 1e-6 cells: ``GCRALimiter(1000, 1.0)`` at
    ``now=5e6`` reported 992 after seven requests, skipping 993)."""
    return max(0, math.floor((room_s + EPS_S) / interval_s))


class ConcurrencyLimiter:
    """At most ``limit`` requests in progress: ``decide`` takes a slot, :meth:`release`
    gives it back when the response ends. A refusal cannot say when a slot frees; it
    advertises :data:`CONCURRENT_RETRY_S`."""

    __slots__ = ("in_flight", "limit", "window_s")

    def __init__(self, limit: int, window_s: float = 1.0) -> None:
        self.limit = integer("ConcurrencyLimiter(limit)", limit, minimum=1)
        self.window_s = window_s
        self.in_flight = 0

    def decide(self, now: float, amount: float = 1) -> Decision:
        d = self.peek(now, amount)
        if d.allowed:
            self.in_flight += 1
        return d

    def peek(self, now: float, amount: float = 1) -> Decision:
        if self.in_flight + 1 > self.limit:
            return Decision(False, 0, 0.0, CONCURRENT_RETRY_S)
        return Decision(True, self.limit - self.in_flight - 1, 0.0, 0.0)

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def refund(self, now: float, amount: float, charged_at: float) -> None:
        """Nothing to give back: a slot is released, not refunded."""

    def __repr__(self) -> str:
        return f"ConcurrencyLimiter({self.limit})"


#: What a refusal by a ``unit="concurrent"`` quota advertises as ``Retry-After`` (a guess:
#: the server cannot know when a request in progress ends; GitHub's documentation tells
#: clients to wait at least a minute after a secondary limit without ``retry-after``).
CONCURRENT_RETRY_S = 1.0


_LIMITERS: dict[str, type[Limiter]] = {
    "fixed_window": FixedWindowLimiter,
    "sliding_window": SlidingWindowLimiter,
    "token_bucket": TokenBucketLimiter,
    "gcra": GCRALimiter,
}


# --- the descriptions --------------------------------------------------------------------


def _routes(value: object) -> tuple[str, ...] | None:
    valid = "must be None (all paths), a path such as '/get' (a trailing '*' matches a prefix) "
    valid += "or a list of paths"
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, bytes):
        raise ConfigError("ServerRateLimit(routes)", value, valid)
    out = tuple(items)
    if not out or not all(isinstance(p, str) and p.startswith("/") for p in out):
        raise ConfigError("ServerRateLimit(routes)", value, valid)
    return tuple(dict.fromkeys(out))


#: What a quota counts (``ratelab.protocol.quota.UNITS``).
UNITS = ("requests", "tokens", "concurrent")


@dataclass(frozen=True, init=False, repr=False)
class ServerRateLimit:
    """At most ``limit`` units per ``window_s`` seconds, answered with 429 beyond it.

    ``algorithm``: ``"fixed_window"`` (default), ``"sliding_window"``, ``"token_bucket"`` or
    ``"gcra"`` (see :mod:`ratelab.server.policies`). ``routes``: None limits all requests together;
    a path (``"/get"``, or a prefix ending in ``*`` such as ``"/status/*"``) or a list of
    paths limits those requests together and leaves the others alone.

    ``unit``: what is counted: ``"requests"`` (default; each request is 1), ``"tokens"``
    (each request is its cost, the ``X-Ratelab-Cost`` request header, 1 without it) or
    ``"concurrent"`` (requests in progress, from admission to the end of the response;
    ``window_s`` and ``algorithm`` do not apply). ``name``: the quota's name in the
    response headers (default: the unit; the LocalServer numbers repeated names).
    """

    limit: int
    window_s: float = 1.0
    algorithm: str = "fixed_window"
    routes: tuple[str, ...] | None = None
    unit: str = "requests"
    name: str | None = None

    def __init__(
        self,
        limit: int,
        window_s: float = 1.0,
        *,
        algorithm: str = "fixed_window",
        routes: str | Iterable[str] | None = None,
        unit: str = "requests",
        name: str | None = None,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "limit", integer("ServerRateLimit(limit)", limit, minimum=1))
        set_(self, "window_s", positive_number("ServerRateLimit(window_s)", window_s))
        if algorithm not in ALGORITHMS:
            raise ConfigError(
                "ServerRateLimit(algorithm)", algorithm, f"must be one of {', '.join(ALGORITHMS)}"
            )
        set_(self, "algorithm", algorithm)
        set_(self, "routes", _routes(routes))
        if unit not in UNITS:
            raise ConfigError("ServerRateLimit(unit)", unit, f"must be one of {', '.join(UNITS)}")
        set_(self, "unit", unit)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError("ServerRateLimit(name)", name, "must be a non-empty string or None")
        set_(self, "name", name)
        exact = frozenset(p for p in self.routes or () if not p.endswith("*"))
        prefixes = tuple(p[:-1] for p in self.routes or () if p.endswith("*"))
        set_(self, "_exact", exact)
        set_(self, "_prefixes", prefixes)

    def applies_to(self, path: str) -> bool:
        """Whether a request for ``path`` counts against this limit."""
        if self.routes is None or path in self._exact:  # type: ignore[attr-defined]
            return True
        return any(path.startswith(p) for p in self._prefixes)  # type: ignore[attr-defined]

    def build(self) -> Limiter | ConcurrencyLimiter:
        """A fresh limiter (no requests seen yet) implementing this limit."""
        if self.unit == "concurrent":
            return ConcurrencyLimiter(self.limit)
        return _LIMITERS[self.algorithm](self.limit, self.window_s)

    def to_dict(self) -> dict[str, object]:
        """Plain data; :func:`as_rate_limits` reads it back."""
        routes = None if self.routes is None else list(self.routes)
        return {"limit": self.limit, "window_s": self.window_s, "algorithm": self.algorithm,
                "routes": routes, "unit": self.unit, "name": self.name}  # fmt: skip

    def __repr__(self) -> str:
        out = f"ServerRateLimit({self.limit}, {self.window_s!r}"
        if self.algorithm != "fixed_window":
            out += f", algorithm={self.algorithm!r}"
        if self.routes is not None:
            routes = self.routes[0] if len(self.routes) == 1 else list(self.routes)
            out += f", routes={routes!r}"
        if self.unit != "requests":
            out += f", unit={self.unit!r}"
        if self.name is not None:
            out += f", name={self.name!r}"
        return out + ")"


def check_names(limits: Iterable[ServerRateLimit], parameter: str = "rate_limit") -> None:
    """Two limits may not be given the same ``name`` (the headers could not tell them
    apart); unnamed ones are numbered by the server."""
    names = [r.name for r in limits if r.name is not None]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(parameter, dupes, "must give each ServerRateLimit its own name")


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_RATE_RE = re.compile(
    r"(?P<limit>\d+)\s*(?P<quota>requests|tokens)?\s*/\s*(?P<n>\d+(?:\.\d*)?|\.\d+)?"
    r"\s*(?P<unit>ms|min|s|m|h)?\s*(?::\s*(?P<algorithm>\w+))?"
)
_CONCURRENT_RE = re.compile(r"(?P<limit>\d+)\s*concurrent")


def parse_rate_limit(text: str, *, parameter: str = "rate_limit") -> ServerRateLimit:
    """Parse the command-line form ``LIMIT[ UNIT]/WINDOW[:algorithm]``: ``20/1s``, ``20/s``,
    ``100/1m:sliding_window``, ``5/500ms:gcra`` (units ms, s, m or min, h; none: s),
    ``30000 tokens/1m`` (a tokens quota), or ``100 concurrent`` (requests in progress)."""
    text = text.strip() if isinstance(text, str) else text
    concurrent = _CONCURRENT_RE.fullmatch(text) if isinstance(text, str) else None
    if concurrent is not None:
        return ServerRateLimit(int(concurrent["limit"]), unit="concurrent")
    match = _RATE_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None or (match["n"] is None and match["unit"] is None):
        raise ConfigError(
            parameter, text,
            "must look like 20/1s, 20/s, 100/1m:sliding_window, '30000 tokens/1m' or"
            " '100 concurrent' (LIMIT[ UNIT]/WINDOW)",
        )  # fmt: skip
    window = float(match["n"] or 1) * _UNITS[match["unit"] or "s"]
    return ServerRateLimit(
        int(match["limit"]), window, algorithm=match["algorithm"] or "fixed_window",
        unit=match["quota"] or "requests",
    )  # fmt: skip


def as_rate_limits(value: object, parameter: str = "rate_limit") -> tuple[ServerRateLimit, ...]:
    """Accept None, a ServerRateLimit, a ``"20/1s[:algorithm]"`` string, a mapping of
    ServerRateLimit's arguments (what :meth:`ServerRateLimit.to_dict` gives, e.g. a TOML
    table) or a list of those. None and an empty list mean no limit."""
    if value is None:
        return ()
    if isinstance(value, ServerRateLimit):
        return (value,)
    if isinstance(value, str):
        return (parse_rate_limit(value, parameter=parameter),)
    if isinstance(value, Mapping):
        try:
            return (ServerRateLimit(**value),)
        except TypeError as e:
            valid = "takes limit, window_s, algorithm, routes, unit and name"
            raise ConfigError(parameter, value, valid) from e
    if isinstance(value, list | tuple):
        return tuple(lim for item in value for lim in as_rate_limits(item, parameter))
    raise ConfigError(
        parameter,
        value,
        "must be a rl.ServerRateLimit(...), a string such as '20/1s:gcra', a list of them, or None",
    )


def as_faults(value: object, parameter: str = "faults") -> Faults | None:
    """Accept None, a Faults or a mapping of its arguments (e.g. a TOML table)."""
    if value is None or isinstance(value, Faults):
        return value
    if isinstance(value, Mapping):
        try:
            return Faults(**value)
        except TypeError as e:
            valid = "takes error_rate, status, reset_rate, stall_rate and seed"
            raise ConfigError(parameter, value, valid) from e
    raise ConfigError(parameter, value, "must be rl.Faults(...), a mapping of its fields or None")


@dataclass(frozen=True, repr=False)
class Faults:
    """Injected failures, drawn per request from a generator seeded with ``seed``.

    A request that passes the rate limits and the concurrency cap fails with probability
    ``error_rate`` (answered with ``status`` after the latency), ``reset_rate`` (the
    connection is dropped without a response after the latency) or ``stall_rate`` (never
    answered, until the client gives up or the server stops). With ``seed=None`` the
    server's seed is used.
    """

    error_rate: float = 0.0
    status: int = 500
    reset_rate: float = 0.0
    stall_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        total = 0.0
        for field in ("error_rate", "reset_rate", "stall_rate"):
            name, value = f"Faults({field})", getattr(self, field)
            rate = positive_number(name, value, allow_zero=True)
            if rate > 1:
                raise ConfigError(name, value, "must be a probability in [0, 1]")
            object.__setattr__(self, field, rate)
            total += rate
        if total > 1 + 1e-12:
            raise ConfigError(
                "Faults(error_rate + reset_rate + stall_rate)",
                total,
                "must be <= 1: each request gets at most one fault",
            )
        status = integer("Faults(status)", self.status, minimum=400)
        if status > 599:
            raise ConfigError("Faults(status)", status, "must be an HTTP error status, 400..599")
        object.__setattr__(self, "status", status)
        if self.seed is not None:
            object.__setattr__(self, "seed", integer("Faults(seed)", self.seed, minimum=0))

    @property
    def active(self) -> bool:
        """Whether any fault can happen at all."""
        return self.error_rate + self.reset_rate + self.stall_rate > 0

    def to_dict(self) -> dict[str, object]:
        """Plain data; :func:`as_faults` reads it back."""
        return dataclasses.asdict(self)

    def __repr__(self) -> str:
        parts = [
            f"{f}={getattr(self, f)!r}"
            for f, default in (
                ("error_rate", 0.0),
                ("status", 500),
                ("reset_rate", 0.0),
                ("stall_rate", 0.0),
                ("seed", None),
            )
            if getattr(self, f) != default
        ]
        return f"Faults({', '.join(parts)})"
