"""Shared fixtures: a controlled (virtual) clock for limiter logic, and a real local server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

import ratelab as rl
from ratelab.testing import VirtualClockLoop

T = TypeVar("T")


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
