"""A virtual clock for exact, repeatable tests of anything that reads ``loop.time()``.

    from ratelab.testing import VirtualClockLoop, run_virtual

    result = run_virtual(rl.arun(exp, progress=False))   # an hour of limits in milliseconds

On a :class:`VirtualClockLoop` time starts at 0 and jumps straight to the next timer when
every task is waiting, so aiolimiter, asyncio.sleep, ratelab's guards and its engine see
repeatable times, exact to well under a nanosecond, and no test waits for the wall clock.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["TICK_S", "VirtualClockLoop", "run_virtual"]

T = TypeVar("T")

TICK_S = 1e-12  # how far the virtual clock moves per loop iteration with work ready


class _FastForwardSelector:
    """Wraps the loop's selector: when no I/O is ready, time jumps to the next timer instead
    of the loop sleeping. Real I/O still works (it is polled without blocking)."""

    def __init__(
        self, real: selectors.BaseSelector, loop: VirtualClockLoop, poll_every: int = 1
    ) -> None:
        self._real = real
        self._loop = loop
        self._poll_every = poll_every
        self._skipped = 0

    def select(self, timeout: float | None = None) -> list[Any]:
        if self._poll_every == 1 or timeout is None or self._skipped >= self._poll_every:
            self._skipped = 0
            events = self._real.select(0)
            if events:
                return events
        else:  # a callback put in by another thread is already in the ready queue
            self._skipped += 1
            events = []
        if timeout == 0:
            # Callbacks are ready: let a picosecond pass. Code that re-arms a timer "now"
            # until the clock moves (aiolimiter does, on a float residue of its level)
            # would otherwise spin forever on a clock that never moves by itself.
            self._loop.now += TICK_S
        else:
            if timeout is None:
                raise RuntimeError("virtual clock: nothing scheduled and nothing ready (deadlock)")
            # jump straight to the next timer (adding a tiny timeout to a large clock value
            # could round to no change at all and spin forever)
            scheduled = self._loop._scheduled  # asyncio's timer heap
            target = self._loop.now + max(timeout, 0.0)
            if scheduled:
                target = max(target, scheduled[0].when())
            self._loop.now = target
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual: it starts at 0 and jumps straight to the
    next timer when every task is waiting on one (plus TICK_S per busy iteration). Code that
    reads time from ``loop.time()`` (aiolimiter, asyncio.sleep, the engine) sees repeatable
    times, exact to well under a nanosecond.

    ``poll_every=N`` polls for I/O only every N iterations (and whenever nothing is ready):
    for runs with no sockets (a simulation), where the poll is a system call per iteration
    that finds nothing. Callbacks from other threads (``call_soon_threadsafe``) still run
    at once: they are queued, not polled for.

    ``epoch_offset_s``: the wall clock (``ratelab.protocol.wall_clock.epoch_s``) reads
    ``time() + epoch_offset_s``; by default virtual time 0 is the moment the loop was made."""

    def __init__(self, *, poll_every: int = 1, epoch_offset_s: float | None = None) -> None:
        super().__init__()
        self.now = 0.0
        self.epoch_offset_s = time.time() if epoch_offset_s is None else float(epoch_offset_s)
        self._selector = _FastForwardSelector(self._selector, self, poll_every)  # type: ignore[assignment]

    def time(self) -> float:
        return self.now


def run_virtual(aw: Awaitable[T]) -> T:
    """Run ``aw`` to the end on a fresh :class:`VirtualClockLoop` and close the loop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(aw)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
