"""The client-side strategies: what bounds the requests an experiment sends.

    rl.Unlimited()                       # the baseline: no guard, no connection cap
    rl.RateLimit(20, per_s=1.0)          # aiolimiter.AsyncLimiter(20, 1.0) before each request
    rl.ConnectionLimit(10, per_host=0)   # aiohttp.TCPConnector(limit=10, limit_per_host=0)
    rl.Concurrency(5, endpoint="/slow")  # asyncio.Semaphore(5) around each /slow request
    rl.RateLimit(20) + rl.ConnectionLimit(10)   # both

A strategy is an immutable description. The asyncio objects it stands for (limiter,
semaphore, connector limits) are built by :meth:`Strategy.build` inside the running loop,
once per run, so one Experiment can run again and again, in scripts and notebooks.
Without a ``ConnectionLimit`` the session's connector is unlimited (``limit=0``): aiohttp's
default cap of 100 connections would otherwise be a hidden strategy of its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from typing import ClassVar

from aiolimiter import AsyncLimiter

from ._validate import integer, positive_number
from .errors import ConfigError

__all__ = [
    "Combined",
    "Concurrency",
    "ConnectionLimit",
    "Guard",
    "RateLimit",
    "Strategy",
    "Unlimited",
    "as_strategy",
]


class Guard:
    """A client-side gate a request passes before it is sent (built inside the running loop).

    ``acquire`` may wait; ``release`` is called once the attempt is over, whatever happened;
    ``observe`` sees every attempt's outcome (status 0 when no response came).
    """

    __slots__ = ()

    async def acquire(self, endpoint: str) -> None:
        """Wait until the request to ``endpoint`` may go."""

    def release(self, endpoint: str) -> None:
        """The attempt is over."""

    def observe(self, status: int, error: str | None) -> None:
        """An attempt finished with ``status`` (0: no response) or ``error``."""


class _LimiterGuard(Guard):
    __slots__ = ("_limiter",)

    def __init__(self, limiter: AsyncLimiter) -> None:
        self._limiter = limiter

    async def acquire(self, endpoint: str) -> None:
        await self._limiter.acquire()


class _SemaphoreGuard(Guard):
    __slots__ = ("_endpoint", "_semaphore")

    def __init__(self, n: int, endpoint: str | None) -> None:
        self._semaphore = asyncio.Semaphore(n)
        self._endpoint = endpoint

    async def acquire(self, endpoint: str) -> None:
        if self._endpoint is None or endpoint == self._endpoint:
            await self._semaphore.acquire()

    def release(self, endpoint: str) -> None:
        if self._endpoint is None or endpoint == self._endpoint:
            self._semaphore.release()


@dataclass(frozen=True, slots=True)
class Built:
    """What one run of a strategy uses: guards in order, and the connector's limits."""

    guards: tuple[Guard, ...]
    limit: int  # TCPConnector(limit=...); 0 = unlimited
    limit_per_host: int  # TCPConnector(limit_per_host=...); 0 = unlimited


class Strategy:
    """Base class. Combine strategies with ``+``; ``repr`` is the label in tables and plots."""

    _types: ClassVar[dict[str, type[Strategy]]] = {}  # every concrete strategy, by name

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
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
        guards = tuple(g for g in (part._guard() for part in self.parts) if g is not None)
        return Built(guards, *self.build_limits())

    def _guard(self) -> Guard | None:
        return None

    # What the strategy bounds, for plots and checks (None: not bounded).
    @property
    def rate_per_s(self) -> float | None:
        """The tightest steady rate any RateLimit part allows, in requests per second."""
        rates = [p.max_rate / p.per_s for p in self.parts if isinstance(p, RateLimit)]
        return min(rates) if rates else None

    @property
    def connection_cap(self) -> int | None:
        """The session-wide connection cap, if any."""
        limit = self.build_limits()[0]
        return limit or None

    @property
    def concurrency_cap(self) -> int | None:
        """The tightest global (not endpoint-scoped) semaphore, if any."""
        caps = [p.n for p in self.parts if isinstance(p, Concurrency) and p.endpoint is None]
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
        """A plain-data form (for saved results and TOML files); see :func:`as_strategy`."""
        if isinstance(self, Combined):
            return {"type": "Combined", "parts": [p.to_dict() for p in self.parts]}
        return {
            "type": type(self).__name__,
            **{f.name: getattr(self, f.name) for f in fields(self)},
        }  # type: ignore[arg-type]


@dataclass(frozen=True, repr=False)
class Unlimited(Strategy):
    """No client-side bound at all (and a connector with ``limit=0``)."""

    def __repr__(self) -> str:
        return "Unlimited()"


@dataclass(frozen=True, repr=False)
class RateLimit(Strategy):
    """At most ``max_rate`` requests per ``per_s`` seconds: ``aiolimiter.AsyncLimiter``.

    A fresh limiter admits ``max_rate`` at once (its bucket starts empty), so
    ``RateLimit(20)`` sends ~40 requests in its first second; ``RateLimit(1, per_s=0.05)``
    is the burst-free form of 20/s.
    """

    max_rate: float
    per_s: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_rate", positive_number("RateLimit(max_rate)", self.max_rate))
        object.__setattr__(self, "per_s", positive_number("RateLimit(per_s)", self.per_s))

    def _guard(self) -> Guard:
        return _LimiterGuard(AsyncLimiter(self.max_rate, self.per_s))

    def __repr__(self) -> str:
        per = "" if self.per_s == 1.0 else f", per_s={self.per_s:g}"
        return f"RateLimit({self.max_rate:g}{per})"


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

    def _guard(self) -> Guard:
        return _SemaphoreGuard(self.n, self.endpoint)

    def __repr__(self) -> str:
        ep = f", endpoint={self.endpoint!r}" if self.endpoint is not None else ""
        return f"Concurrency({self.n}{ep})"


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
            return as_strategy(list(data.get("parts", [])), parameter=parameter)
        cls = Strategy._types.get(str(kind))
        if cls is None:
            raise ConfigError(
                f"{parameter}.type", kind, f"must be one of {', '.join(Strategy._types)}"
            )
        try:
            return cls(**data)
        except TypeError as e:
            raise ConfigError(
                parameter, value, f"{kind} takes {[f.name for f in fields(cls)]}"
            ) from e
    raise ConfigError(
        parameter, value, "must be a strategy such as rl.RateLimit(20) or rl.ConnectionLimit(10)"
    )
