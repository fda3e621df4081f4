"""The limiters' state over time: a task on the run's loop samples each guard's
:meth:`~ratelab.client.guards.Guard.state` and the transport's pool
(:meth:`~ratelab.client.transports.base.Transport.state`) every ``interval_s``.

The samples lie on a grid of the run clock: ``t0 + k * interval_s`` (each wait is computed
from the grid, so on the virtual clock they are exact and do not drift; on a real loop a
sample is stamped with the time it was taken). The same interval is used on the virtual
clock (decided: a state change happens inside ``acquire``/``release``, which the guards own;
sampling on a grid keeps the guards untouched and the rows comparable between a real and a
simulated run). A first sample is taken when the task first runs (just after the workers'
first step: on the virtual clock at t = 0, after a burst has gone through) and a last one
when the run ends. A busy loop that wakes the sampler late skips the ticks it missed.

Long runs stay bounded: after :data:`MAX_TICKS` samples the interval doubles and every
other sample kept so far is dropped, so a simulated day at 0.05 s costs at most a few
hundred thousand wake-ups and :data:`MAX_TICKS` rows per quantity. The interval in use at
the end is ``sampler.interval_s``.

``result.state`` is the long frame :meth:`StateSampler.frame`: ``t_s``, ``guard`` (the
strategy part's label, or ``"pool"``), ``quantity``, ``value``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_INTERVAL_S", "MAX_TICKS", "SourceFailed", "StateSampler", "empty_state"]

#: Default sampling interval of the run clock (``state_interval_s``).
DEFAULT_INTERVAL_S = 0.05
#: Samples kept before the interval doubles (and every other sample is dropped).
MAX_TICKS = 20_000

#: (label in ``result.state``, name in a failure's ``where``, the ``state`` method)
Source = tuple[str, str, Callable[[], Mapping[str, float]]]


class SourceFailed(Exception):
    """A ``state()`` raised: ``where`` names it (``guard RateLimit(20).state``)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def empty_state() -> pd.DataFrame:
    """The state frame with no rows: t_s, guard, quantity, value."""
    from ratelab.analysis.files import empty_state as empty

    return empty()


class StateSampler:
    """Samples ``sources`` (``(label, where, state)``) every ``interval_s`` of the run clock.

    Written on the loop's thread; :meth:`latest` and :meth:`since` may be read from
    another thread (the live view): they read the columns' lengths first, so a sample being
    appended is left out, and ``generation`` (odd while the samples are being thinned, one
    more when done: a sequence lock) tells them when the columns were replaced."""

    __slots__ = (
        "_keys", "generation", "interval_s", "keys", "sources", "t", "tick", "value", "which",
    )  # fmt: skip

    def __init__(self, sources: list[Source], interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.sources = sources
        self.interval_s = float(interval_s)
        self.keys: list[tuple[str, str]] = []  # (guard, quantity) by index
        self._keys: dict[tuple[str, str], int] = {}
        self.t: list[float] = []
        self.tick: list[int] = []
        self.which: list[int] = []
        self.value: list[float] = []
        self.generation = 0

    def sample(self, t_s: float, tick: int) -> int:
        """Record every source's state at run time ``t_s``; returns how many values."""
        keys, t, ticks, which, value = self._keys, self.t, self.tick, self.which, self.value
        n = 0
        for label, where, state in self.sources:
            try:
                items = state().items()
            except Exception as e:
                raise SourceFailed(f"{where}.state") from e
            for name, v in items:
                key = (label, name)
                k = keys.get(key)
                if k is None:
                    k = keys[key] = len(self.keys)
                    self.keys.append(key)
                which.append(k)
                value.append(float(v))
                ticks.append(tick)
                t.append(t_s)  # last: a reader taking len(t) sees whole rows
                n += 1
        return n

    async def run(self, now: Callable[[], float], t0: float) -> None:
        """Sample at t = 0, then on the grid until cancelled (then once more, and stop).

        Each sample is a plain timer callback (``loop.call_later``), not a task waking from
        a sleep: on the virtual clock a task's wake-up is one more loop iteration with work
        ready, which moves the clock by ``TICK_S``, so sampling would shift every later
        event by picoseconds and could reorder ties (a run with sampling on would differ
        from one with it off). A timer callback runs in the iteration its time comes."""
        loop = asyncio.get_running_loop()
        tick = 0
        if not self.sample(now() - t0, tick):  # nothing to sample (e.g. no guard state)
            return
        failed: asyncio.Future[None] = loop.create_future()
        handle: asyncio.TimerHandle | None = None
        last = 0

        def schedule(tick: int) -> None:
            nonlocal handle
            nxt = max(tick + 1, int((now() - t0) / self.interval_s) + 1)  # none missed
            handle = loop.call_later(max(t0 + nxt * self.interval_s - now(), 0.0), step, nxt)

        def step(tick: int) -> None:
            nonlocal last
            try:
                self.sample(now() - t0, tick)
                last = tick
                if tick >= MAX_TICKS:
                    tick = last = self._thin(tick)
            except BaseException as e:  # ends the run, named by the engine
                if not failed.done():
                    failed.set_exception(e)
                return
            schedule(tick)

        schedule(tick)
        try:
            await failed
        except asyncio.CancelledError:
            self.sample(now() - t0, last + 1)
            raise
        finally:
            if handle is not None:
                handle.cancel()

    def _thin(self, tick: int) -> int:
        """Double the interval; keep the samples on the new grid (even ticks)."""
        keep = [i for i, k in enumerate(self.tick) if k % 2 == 0]
        self.generation += 1  # odd: a reader meanwhile reads again later
        self.t = [self.t[i] for i in keep]
        self.which = [self.which[i] for i in keep]
        self.value = [self.value[i] for i in keep]
        self.tick = [self.tick[i] // 2 for i in keep]
        self.interval_s *= 2
        self.generation += 1
        return tick // 2

    def latest(self) -> dict[tuple[str, str], float]:
        """The last value of each (guard, quantity) so far (for a live view)."""
        t, keys, which, value = self.t, self.keys, self.which, self.value
        n = min(len(t), len(which), len(value))
        out: dict[tuple[str, str], float] = {}
        for i in range(max(0, n - 4 * max(len(keys), 1)), n):
            out[keys[which[i]]] = value[i]
        return out

    def since(
        self, generation: int, start: int
    ) -> tuple[int, int, list[float], list[tuple[str, str]], list[float]] | None:
        """The samples from row ``start`` on, for a reader that has read the rows before it
        in ``generation`` (all of them, from row 0, if they were thinned since):
        ``(generation, end, t_s, (guard, quantity), value)``, a consistent prefix. None while
        they are being thinned (read again later)."""
        g = self.generation
        t, which, value = self.t, self.which, self.value
        if g % 2 or self.generation != g:
            return None
        if g != generation:
            start = 0
        n = min(len(t), len(which), len(value))
        keys = self.keys
        return g, n, t[start:n], [keys[k] for k in which[start:n]], value[start:n]

    def frame(self) -> pd.DataFrame:
        """The long frame ``result.state``: t_s, guard, quantity, value (time order)."""
        import numpy as np
        import pandas as pd

        if not self.t:
            return empty_state()
        which = np.asarray(self.which, np.int64)
        guards = [g for g, _ in self.keys]
        names = [q for _, q in self.keys]
        return pd.DataFrame(
            {
                "t_s": np.asarray(self.t, np.float64),
                "guard": pd.Categorical(
                    [guards[k] for k in which], categories=list(dict.fromkeys(guards))
                ),
                "quantity": pd.Categorical(
                    [names[k] for k in which], categories=list(dict.fromkeys(names))
                ),
                "value": np.asarray(self.value, np.float64),
            }
        )


def check_interval(value: object) -> float | None:
    """``state_interval_s``: None (off) or a finite number of seconds > 0."""
    from ratelab.errors import ConfigError

    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigError(
            "state_interval_s", value, "a number of seconds > 0 (e.g. 0.05), or None for off"
        )
    return float(value)
