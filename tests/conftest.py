"""Shared fixtures: a controlled (virtual) clock for limiter logic, and a real local server."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

import ratelab as rl

T = TypeVar("T")


TICK_S = 1e-12  # how far the virtual clock moves per loop iteration with work ready


class _FastForwardSelector:
    """Wraps the loop's selector: when no I/O is ready, time jumps to the next timer instead
    of the loop sleeping. Real I/O still works (it is polled without blocking)."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualClockLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._real.select(0)
        if events:
            return events
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
    times, exact to well under a nanosecond."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._selector = _FastForwardSelector(self._selector, self)  # type: ignore[assignment]

    def time(self) -> float:
        return self.now


@pytest.fixture
def virtual_clock() -> Iterator[Callable[[Awaitable[T]], T]]:
    """``virtual_clock(coro)`` runs ``coro`` to the end on a VirtualClockLoop."""
    loop = VirtualClockLoop()

    def run(coro: Awaitable[T]) -> T:
        return loop.run_until_complete(coro)

    yield run
    loop.close()


@pytest.fixture(scope="session")
def server() -> Iterator[rl.LocalServer]:
    """One real local server for the session (127.0.0.1, free port, own thread)."""
    with rl.LocalServer(seed=1) as s:
        yield s


@pytest.fixture
def fresh_server() -> Iterator[Callable[..., rl.LocalServer]]:
    """Start LocalServers with given options; all are stopped after the test."""
    started: list[rl.LocalServer] = []

    def make(**kwargs: Any) -> rl.LocalServer:
        s = rl.LocalServer(**kwargs).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
