"""``SharedRateLimit`` in a simulation: the ``limits`` package's moving window, kept in memory
on the virtual clock instead of in Redis.

A real :class:`~ratelab.client.shared_limit.SharedRateLimit` keeps its hits in Redis, on
Redis's (real) clock. In a simulation every client runs on one virtual-clock loop, so the
shared store is an object on that loop: :class:`MovingWindowStore`, one per run, shared by
every client of ``rl.simulate(exp, clients=N)`` that agrees on ``redis``, ``key`` and the
rate (as Redis keys are built from them). It keeps ``limits``' moving-window semantics
(``limits.storage.MemoryStorage.acquire_entry`` / ``get_moving_window``): a hit at ``t`` is
allowed when fewer than ``max_rate`` hits lie in ``[t - period_s, t]``; the window's stats
are the count in it and when its oldest hit leaves. :class:`SimulatedSharedGuard` runs the
real guard's loop (its atomic check with the margin, ``_ACQUIRE_WITH_MARGIN_LUA``): one
acquisition at a time per client; a hit is allowed when fewer than ``max_rate`` hits lie in
``[t - period_s - margin_s, t]``, and a refused one waits until the slot it waits for has
been free for ``margin_s`` (plus up to ``JITTER_S``, from a seeded generator so runs repeat
exactly), then tries again. A Redis round trip takes no time.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from ratelab.client.guards import Guard
from ratelab.client.shared_limit import JITTER_S, MIN_WAIT_S, SharedRateLimit
from ratelab.errors import ConfigError
from ratelab.experiment.strategies import Combined, Strategy

__all__ = ["MovingWindowStore", "SimulatedSharedGuard", "simulated_strategy"]


class MovingWindowStore:
    """The hits of one shared key, on the loop's clock (``limits``' moving window)."""

    __slots__ = ("hits", "limit", "period_s")

    def __init__(self, limit: int, period_s: float) -> None:
        self.limit = limit
        self.period_s = float(period_s)
        self.hits: deque[float] = deque()  # oldest first; at most ``limit`` kept

    def hit(self, now: float) -> bool:
        """Count a hit at ``now`` if fewer than ``limit`` lie in ``[now - period_s, now]``."""
        return self.acquire(now, 0.0) is None

    def acquire(self, now: float, margin_s: float) -> float | None:
        """Count a hit at ``now`` if fewer than ``limit`` lie in
        ``[now - period_s - margin_s, now]`` (None); else return when the slot it waits
        for will have been free for ``margin_s`` (the real guard's Lua script)."""
        hits = self.hits
        if len(hits) >= self.limit:
            blocking = hits[-self.limit]
            if blocking >= now - self.period_s - margin_s:
                return blocking + self.period_s + margin_s
        hits.append(now)
        if len(hits) > self.limit:
            hits.popleft()
        return None

    def window(self, now: float) -> tuple[float, int]:
        """(when the oldest hit in the window leaves it, hits left in the window)."""
        start = now - self.period_s
        inside = [t for t in self.hits if t >= start]
        if not inside:
            return now, self.limit
        return inside[0] + self.period_s, max(0, self.limit - len(inside))


#: loop -> {(redis, key, max_rate, period_s): store}: every client on a loop shares them.
_Stores = dict[tuple[object, ...], MovingWindowStore]
_STORES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Stores] = weakref.WeakKeyDictionary()


def _store(spec: SharedRateLimit) -> MovingWindowStore:
    stores = _STORES.setdefault(asyncio.get_running_loop(), {})
    key = (spec.redis, spec.key, spec.max_rate, spec.period_s)
    if key not in stores:
        stores[key] = MovingWindowStore(spec.max_rate, spec.period_s)
    return stores[key]


class SimulatedSharedGuard(Guard):
    """The guard of a simulated :class:`SharedRateLimit`: the real guard's waiting, against
    the loop's :class:`MovingWindowStore`."""

    __slots__ = ("_lock", "_rng", "loop", "spec", "store")

    def __init__(self, spec: SharedRateLimit, *, seed: int) -> None:
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        self.store = _store(spec)
        self._lock = asyncio.Lock()
        self._rng = random.Random(seed)

    async def acquire(self, endpoint: str) -> None:
        async with self._lock:  # one at a time per client, first come first served
            store, loop, margin = self.store, self.loop, self.spec.margin_s
            cap = self.spec.period_s + margin
            while True:
                now = loop.time()
                frees_s = store.acquire(now, margin)
                if frees_s is None:
                    return
                wait = max(frees_s - now, MIN_WAIT_S)
                await asyncio.sleep(min(wait + JITTER_S * self._rng.random(), cap))

    def state(self) -> Mapping[str, float]:
        """``in_window``: the shared key's hits in the moving window now (every client's)."""
        _reset, remaining = self.store.window(self.loop.time())
        return {"in_window": float(self.store.limit - remaining)}


@dataclass(frozen=True, repr=False)
class _Simulated(SharedRateLimit):
    """A SharedRateLimit whose guard is simulated (same repr, so the same guard label)."""

    client: int = 0

    def guard(self) -> Guard:
        return SimulatedSharedGuard(self, seed=self.client)

    def preflight(self) -> None:  # no Redis to check
        return None


def check_shared(strategy: Strategy) -> None:
    """Refuse (ConfigError) a SharedRateLimit whose algorithm is not simulated."""
    for part in strategy.parts:
        if isinstance(part, SharedRateLimit) and part.algorithm != "moving_window":
            raise ConfigError(
                "strategy", part,
                "only SharedRateLimit(algorithm='moving_window') (the default) is simulated",
            )  # fmt: skip


def simulated_strategy(strategy: Strategy, *, client: int = 0) -> Strategy:
    """``strategy`` with each SharedRateLimit part simulated (others unchanged)."""
    parts = strategy.parts
    if not any(isinstance(p, SharedRateLimit) for p in parts):
        return strategy
    out = []
    for p in parts:
        if isinstance(p, SharedRateLimit):
            p = _Simulated(p.max_rate, p.period_s, redis=p.redis, key=p.key,
                           algorithm=p.algorithm, redis_timeout_s=p.redis_timeout_s,
                           margin_s=p.margin_s, client=client)  # fmt: skip
        out.append(p)
    return out[0] if len(out) == 1 else Combined(tuple(out))
