"""One rate limit shared by many clients: :class:`SharedRateLimit`, kept in Redis.

    with rl.redis_server.start() as redis:      # or any Redis: redis://host:6379/0
        exp = rl.Experiment(target=server, requests=400, workers=40,
                            strategy=SharedRateLimit(20, redis=redis.url))
        result = run_processes(exp, processes=4)   # 20/s in total, not 20/s per process

A per-process limiter (``rl.RateLimit(20)``) knows only its own requests: four processes
each allowed 20/s send 80/s. :class:`SharedRateLimit` keeps the count in Redis, through the
``limits`` package (its async Redis storage, on the ``coredis`` client), so every process,
thread or machine using the same Redis and ``key`` draws from one budget. A request over
the limit WAITS: the guard asks Redis when the window frees up (``get_window_stats``), sleeps
until then and tries again; the wait shows in ``admitted_s - ready_s`` like any limiter's.

Algorithms (``limits`` strategies; all allow at most ``max_rate`` hits per ``period_s``):

``"moving_window"`` (default)
    An exact log of the last ``max_rate`` hits (a Redis list): a hit at ``t`` is allowed if
    fewer than ``max_rate`` hits lie in ``[t - period_s, t]``. Never more than ``max_rate`` in
    ANY window of ``period_s`` — by the clients' clocks at acquisition.
``"sliding_window_counter"``
    Two fixed-window counters, the previous one weighted by its overlap: cheaper, an
    approximation that can let a few more through than the moving window.
``"fixed_window"``
    One counter per window that opens at the first hit and expires after ``period_s``: up to
    ``2 * max_rate`` can pass across the edge of two windows.

Timing. The moving window stamps each hit with the client's ``time.time()`` as it goes to
Redis; the server counts the request when it arrives, a delivery delay later (the Redis
reply, the HTTP send, a new connection, the OS scheduler: from 0.1 ms to tens of ms on a
busy machine, more across a network). Were a slot reused the instant it frees, a request
delayed on its way followed by a prompt one could reach a strict server less than
``period_s`` apart, and the server would count ``max_rate + 1``. So no slot is reused
sooner than ``margin_s`` (default 20 ms) after it frees: delivery delays that differ by
less than that never show at the server. For ``"moving_window"`` that is one atomic check
in Redis (a small Lua script on ``limits``' own key and list): a hit at ``t`` is allowed
when fewer than ``max_rate`` hits lie in ``[t - period_s - margin_s, t]``, and a refused
hit gets back, in the same reply, the stamp of the hit whose slot it waits for, and sleeps
until that slot has been free for ``margin_s``; then it tries again (the same atomic
check, never a stale read). Two races of the earlier two-step form (``limits``' hit, then a
separate ``get_window_stats``) are gone with it: a client that found a slot "free" after
another took the oldest one retried at once, and a slot that freed between the failed hit
and the stats read was taken at once; both reused slots 10-20 ms after they freed
(issue 17). It costs ``margin_s / period_s`` of the rate when saturated (2% at the
defaults); raise it for a server across a network (to about the network's jitter), set 0
for the exact limiter. The other algorithms are ``limits``' own, with the margin added to
the wait only.

What the margin cannot cover: a request whose delivery takes longer than another's by
more than ``margin_s``. The largest such delays are a run's first requests: measured on
2 cores with other jobs running (load 4-11), from the Redis reply to the server's arrival
~10 ms on average and up to ~40 ms later on, but 30-90 ms for each freshly started
process's first few requests (new connections and first calls, processes starting
together). A strict server of the same limit then refuses requests, mostly those that
reuse those first slots (before this fix, at the default margin: 1-2 a run alone, 12-16 with 4
processes x 4 tasks at 50/s; after it, 0 alone in 5 runs and 0-2 with 4 processes).
Zero refusals need a margin above that spread: with ``margin_s=0.1``, none in 11 runs
alone; with 4 processes none in 8 of 10 runs, and 7 and 3 in the other two (the machine
at its busiest, other test suites beside it) (``tests/client/test_shared_limit.py``,
which checks the margin exactly on the stamps Redis keeps); a transport that opened its
connections before the first hit would shrink the spread instead (not done: the
engine's business).
Processes on one machine share the clock; across machines the clocks differ by their NTP
error (ms), which shifts where each client thinks the window ends by as much.

Per process, acquisitions go one at a time, first come first served: only the head of the
line talks to Redis (no herd of waiters polling it), at one round trip per acquire
(~0.1-0.3 ms locally) — at most a few thousand acquires per second per process.

Requirements: ``pip install 'ratelab[redis]'`` (``limits[async-redis]``) and a running Redis
(:func:`ratelab.testing.redis.start` runs a throwaway one). Redis missing, gone or frozen:
the request's acquire raises :class:`RedisUnavailableError` within ``redis_timeout_s`` (one
bound on the whole call, the client's reconnect tries included), so the attempt is an error
row, never a hang; and from then on the run's guard fails every later acquire at once with
the same error (no second wait per request), so a run against a Redis that stopped
answering ends promptly with every row kept. :meth:`SharedRateLimit.preflight` checks Redis
before a run and raises it with the way to start Redis.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import KW_ONLY, dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ratelab._renamed import renamed
from ratelab._validate import positive_number
from ratelab.client.guards import Guard
from ratelab.errors import ConfigError, RatelabError
from ratelab.experiment.strategies import Strategy

__all__ = [
    "DEFAULT_REDIS",
    "SHARED_ALGORITHMS",
    "RedisUnavailableError",
    "SharedRateLimit",
    "available",
]

T = TypeVar("T")

#: Where SharedRateLimit looks for Redis unless told otherwise.
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
#: algorithm -> the ``limits.aio.strategies`` class that implements it.
SHARED_ALGORITHMS = {
    "moving_window": "MovingWindowRateLimiter",
    "sliding_window_counter": "SlidingWindowCounterRateLimiter",
    "fixed_window": "FixedWindowRateLimiter",
}
MIN_WAIT_S = 0.0005  # a hit that lost a race for a free slot retries after this ...
JITTER_S = 0.001  # ... and every retry after up to this much more, at random

#: The moving window with a margin, atomically: ``limits``' ``acquire_moving_window.lua``
#: (same key, same list of stamps, newest first, so ``limits`` reads it as its own) with
#: the window widened by the margin for the check only. KEYS[1]: the key; ARGV: the hit's
#: stamp, max_rate, period_s + margin_s (the check), the key's expiry in whole seconds.
#: Returns ``{1}`` when the hit is counted, else ``{0, stamp}``: the stamp of the hit whose
#: slot is the next to free (it frees at stamp + period_s).
_ACQUIRE_WITH_MARGIN_LUA = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local entry = redis.call('lindex', KEYS[1], limit - 1)
if entry and tonumber(entry) >= now - window then
    return {0, entry}
end
redis.call('lpush', KEYS[1], ARGV[1])
redis.call('ltrim', KEYS[1], 0, limit - 1)
redis.call('expire', KEYS[1], tonumber(ARGV[4]))
return {1}
"""
_SCHEMES = ("redis", "rediss", "redis+unix", "unix")

_RATE_VALID = (
    "must be a whole number >= 1 (limits counts whole requests); "
    "e.g. 2.5/s is SharedRateLimit(5, period_s=2)"
)
_PER_VALID = (
    "must be a whole number of seconds >= 1: limits' windows are whole seconds (it has no "
    "millisecond granularity); e.g. 10 per 0.5 s is closest to SharedRateLimit(20, period_s=1)"
)
_EXTRA_HINT = (
    "SharedRateLimit needs the 'limits' package with its async Redis client (coredis): "
    "pip install 'ratelab[redis]' (or: pip install 'limits[async-redis]')"
)


class RedisUnavailableError(RatelabError):
    """Redis did not answer (not running, gone mid-run, or too slow): no request may go."""


def _unavailable(url: str, cause: BaseException | str) -> RedisUnavailableError:
    what = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
    return RedisUnavailableError(
        f"Redis at {url} is not answering ({what}). SharedRateLimit keeps its count in "
        "Redis: start one with `redis-server --port 6379 --save '' --appendonly no`, or from "
        "Python `redis = ratelab.testing.redis.start()` and pass `redis=redis.url`"
    )


#: The largest ``max_rate`` and ``period_s``: Redis counts in signed 64 bits, and limits
#: keeps a moving window's log as a list of up to ``max_rate`` entries.
_MAX_WHOLE = 1_000_000_000


def _whole(name: str, value: object, valid: str) -> int:
    """A positive whole number (``20`` or ``20.0``, at most 10**9) as an int."""
    f = positive_number(name, value)
    if f != math.floor(f):
        raise ConfigError(name, value, valid)
    if f > _MAX_WHOLE:
        raise ConfigError(name, value, f"must be at most {_MAX_WHOLE:,}")
    return int(f)


@renamed(per_s="period_s", timeout_s="redis_timeout_s")
@dataclass(frozen=True, repr=False)
class SharedRateLimit(Strategy):
    """At most ``max_rate`` requests per ``period_s`` seconds across every client that uses
    the same Redis (``redis``) and ``key``; over the limit a request waits.

    ``limits`` counts whole requests in windows of whole seconds (it has no millisecond
    granularity), so ``max_rate`` and ``period_s`` are whole numbers: 2.5 requests/s is
    ``SharedRateLimit(5, period_s=2)``. The Redis key is built from ``key`` and the rate, so
    clients share a budget when they agree on both. The state outlives a run: a run that
    starts within ``period_s`` of the last one finds its hits still counted.
    ``redis_timeout_s`` bounds each call to Redis (connect and reply, reconnect tries
    included); after one that timed out or failed, the rest of the run's acquires fail at
    once. ``margin_s`` is how long after a slot frees a waiting request takes it (see the
    module docstring: it keeps a strict server's count at ``max_rate`` despite delivery
    jitter). (``per_s=`` and ``timeout_s=`` are the
    deprecated names of ``period_s`` and ``redis_timeout_s``.)
    """

    max_rate: int
    period_s: int = 1
    _: KW_ONLY
    redis: str = DEFAULT_REDIS
    key: str = "ratelab"
    algorithm: str = "moving_window"
    redis_timeout_s: float = 1.0
    margin_s: float = 0.02

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "max_rate", _whole("SharedRateLimit(max_rate)", self.max_rate, _RATE_VALID))
        s(self, "period_s", _whole("SharedRateLimit(period_s)", self.period_s, _PER_VALID))
        if not isinstance(self.redis, str) or urlsplit(self.redis).scheme not in _SCHEMES:
            raise ConfigError(
                "SharedRateLimit(redis)", self.redis,
                "must be a Redis URL such as redis://127.0.0.1:6379/0 (or rediss://, unix://)",
            )  # fmt: skip
        if not isinstance(self.key, str) or not self.key:
            raise ConfigError("SharedRateLimit(key)", self.key, "must be a non-empty string")
        if self.algorithm not in SHARED_ALGORITHMS:
            raise ConfigError(
                "SharedRateLimit(algorithm)", self.algorithm,
                f"must be one of {', '.join(SHARED_ALGORITHMS)}",
            )  # fmt: skip
        timeout = positive_number("SharedRateLimit(redis_timeout_s)", self.redis_timeout_s)
        s(self, "redis_timeout_s", timeout)
        margin = positive_number("SharedRateLimit(margin_s)", self.margin_s, allow_zero=True)
        if margin >= self.period_s:
            raise ConfigError("SharedRateLimit(margin_s)", self.margin_s, "must be < period_s")
        s(self, "margin_s", margin)

    @property
    def steady_rate_per_s(self) -> float:
        return self.max_rate / self.period_s

    @property
    def most_in_one_second(self) -> tuple[int, bool]:
        """The most requests any 1 s window can hold, every client together (the polite
        check, :mod:`ratelab.experiment.polite`): ``max_rate`` for the moving window
        (``period_s`` is at least 1 s); a counter's window edge can pass twice that. The
        flag: the bound is shared by every process (not per process)."""
        return (self.max_rate if self.algorithm == "moving_window" else 2 * self.max_rate), True

    def guard(self) -> Guard:
        return SharedGuard(self)

    def preflight(self) -> None:
        """Check, before a run, that ``limits`` is installed and Redis answers; raise
        ImportError (naming the extra) or :class:`RedisUnavailableError` (saying how to
        start Redis) otherwise."""
        _import_limits()
        from ratelab.testing.redis import ping

        if not ping(self.redis, timeout_s=self.redis_timeout_s):
            raise _unavailable(self.redis, f"no reply within {self.redis_timeout_s:g} s")

    def warm_up(self) -> None:
        """Connect once and run each Redis script once in a throwaway loop (call outside
        any running loop, e.g. in a fresh process before its run starts): the first calls
        into ``limits`` cost ~70 ms of one-off work that would otherwise fall on the run's
        first requests. Leaves the shared budget untouched; raises like a run would."""

        async def go() -> None:
            guard = SharedGuard(self)
            try:
                await guard._start()
            finally:
                await guard.aclose()

        asyncio.run(go())

    def __repr__(self) -> str:
        out = [f"{self.max_rate}"]
        if self.period_s != 1:
            out.append(f"period_s={self.period_s}")
        defaults = {"redis": DEFAULT_REDIS, "key": "ratelab", "algorithm": "moving_window",
                    "redis_timeout_s": 1.0, "margin_s": 0.02}  # fmt: skip
        out += [f"{k}={getattr(self, k)!r}" for k, d in defaults.items() if getattr(self, k) != d]
        return f"SharedRateLimit({', '.join(out)})"


def available() -> bool:
    """Whether the ``limits`` package and its async Redis client (``coredis``) are installed
    (the ``redis`` extra)."""
    from importlib.util import find_spec

    return find_spec("limits") is not None and find_spec("coredis") is not None


def _import_limits() -> Any:
    try:
        import coredis  # noqa: F401  (the client limits' async Redis storage uses)
        import limits
        import limits.aio.strategies
        import limits.storage
    except ImportError as exc:
        raise ImportError(_EXTRA_HINT, name="limits") from exc
    return limits


def _redis_errors() -> tuple[type[BaseException], ...]:
    """coredis' own errors (the margin script is called on the client, not through
    ``limits``' storage, which would wrap them)."""
    import coredis.exceptions

    return (coredis.exceptions.RedisError,)


async def _lifetime(guard: SharedGuard) -> AsyncIterator[None]:
    """Held open while the guard lives; the loop's ``shutdown_asyncgens`` (``asyncio.run``,
    ``asyncio.Runner``, ``rl.run``) or garbage collection closes it, and with it the
    guard's Redis connections, so no socket outlives its loop."""
    try:
        yield
    finally:
        guard.close()


class SharedGuard(Guard):
    """The per-run guard of a :class:`SharedRateLimit` (built inside the running loop)."""

    __slots__ = (
        "_down",
        "_item",
        "_lifetime",
        "_limiter",
        "_lock",
        "_margin_script",
        "_pool",
        "_storage",
        "spec",
    )

    def __init__(self, spec: SharedRateLimit) -> None:
        limits = _import_limits()
        import coredis

        self.spec = spec
        self._item = limits.RateLimitItemPerSecond(
            spec.max_rate, spec.period_s, namespace="ratelab"
        )
        url = spec.redis.removeprefix("async+")
        if url.startswith("unix://"):
            url = "redis+" + url  # limits' name for it; coredis says unix://
        # our own pool (coredis' public API) so close() can drop the connections
        self._pool = coredis.ConnectionPool.from_url(
            url.replace("redis+unix://", "unix://"),
            connect_timeout=spec.redis_timeout_s,
            stream_timeout=spec.redis_timeout_s,
        )
        self._storage = limits.storage.storage_from_string(
            "async+" + url, connection_pool=self._pool, wrap_exceptions=True
        )
        cls = getattr(limits.aio.strategies, SHARED_ALGORITHMS[spec.algorithm])
        self._limiter = cls(self._storage)
        # the moving window's margin is kept in Redis, atomically (see the module doc)
        bridge = self._storage.bridge
        self._margin_script = (
            bridge.get_connection().register_script(_ACQUIRE_WITH_MARGIN_LUA),
            bridge.prefixed_key(self._item.key_for(spec.key)),
        ) if spec.algorithm == "moving_window" else None  # fmt: skip
        self._lifetime: AsyncIterator[None] | None = None
        self._lock = asyncio.Lock()
        self._down: RedisUnavailableError | None = None  # set once Redis failed this run

    async def acquire(self, endpoint: str) -> None:
        # One acquisition at a time per process, first come first served: only the head of
        # the line talks to Redis (no herd of waiters polling it), and no hit waits behind
        # the others' round trips between its timestamp and its return.
        async with self._lock:
            if self._down is not None:  # Redis failed: fail fast, no wait per request
                raise RedisUnavailableError(str(self._down)) from self._down
            try:
                if self._lifetime is None:
                    await self._start()
                await self._acquire()
            except RedisUnavailableError as exc:
                self._down = exc
                raise

    async def _call(self, call: Awaitable[T]) -> T:
        """One call to Redis, bounded as a whole (reconnect tries included) by
        ``redis_timeout_s``; a timeout or storage error is RedisUnavailableError."""
        from limits.errors import StorageError

        timeout_s = self.spec.redis_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                return await call
        except TimeoutError as exc:
            raise _unavailable(self.spec.redis, f"no reply within {timeout_s:g} s") from exc
        except (StorageError, OSError, *_redis_errors()) as exc:
            raise _unavailable(self.spec.redis, exc.__cause__ or exc) from exc

    async def _start(self) -> None:
        self._lifetime = _lifetime(self)
        await anext(self._lifetime)  # registers it with the loop's asyncgen hooks
        # Warm up before the first real hit: a moving-window hit is stamped with time.time()
        # BEFORE its round trip, and the first calls connect, load the Lua scripts and warm
        # limits' code paths (~70 ms) — a request stamped at t but sent at t + 70 ms would
        # let the server see more than max_rate in a window. A hit on a throwaway key runs
        # the same script without touching the shared budget.
        if not await self._call(self._storage.check()):
            raise _unavailable(self.spec.redis, "no reply to PING")
        await self._call(self._limiter.get_window_stats(self._item, self.spec.key))
        await self._call(self._limiter.hit(self._item, f"{self.spec.key}/warm-up"))
        if self._margin_script is not None:
            script, key = self._margin_script
            await self._call(script.execute([f"{key}/warm-up"], self._margin_args(time.time())))

    def _margin_args(self, now: float) -> list[object]:
        spec = self.spec
        window_s = spec.period_s + spec.margin_s
        return [repr(now), spec.max_rate, repr(window_s), math.ceil(window_s)]

    async def _acquire(self) -> None:
        if self._margin_script is not None:
            return await self._acquire_moving_window(*self._margin_script)
        limiter, item, key = self._limiter, self._item, self.spec.key
        margin = self.spec.margin_s
        cap = self.spec.period_s + margin
        while True:
            if await self._call(limiter.hit(item, key)):
                return
            stats = await self._call(limiter.get_window_stats(item, key))
            if stats.remaining > 0:  # a slot is free: another client took the one we tried
                wait = MIN_WAIT_S
            else:  # reset_time is wall-clock: when the oldest hit leaves the window
                wait = max(stats.reset_time - time.time(), 0.0) + margin
            await asyncio.sleep(min(wait + JITTER_S * random.random(), cap))

    async def _acquire_moving_window(self, script: Any, key: str) -> None:
        """Hit atomically with the margin; refused, sleep until the slot it waits for has
        been free for ``margin_s`` (from the stamp in the same reply), then hit again."""
        spec = self.spec
        cap = spec.period_s + spec.margin_s
        while True:
            reply = await self._call(script.execute([key], self._margin_args(time.time())))
            if int(reply[0]) == 1:  # type: ignore[index]
                return
            frees_s = float(reply[1]) + spec.period_s + spec.margin_s  # type: ignore[index]
            wait = max(frees_s - time.time(), MIN_WAIT_S)
            await asyncio.sleep(min(wait + JITTER_S * random.random(), cap))

    def close(self) -> None:
        """Drop the Redis connections (idempotent; the next acquire would reconnect)."""
        self._pool.disconnect()

    async def aclose(self) -> None:
        """Close the connections and the lifetime generator (call inside the loop)."""
        self.close()
        if self._lifetime is not None:
            lifetime, self._lifetime = self._lifetime, None
            await lifetime.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0)  # let the transports' close callbacks run
