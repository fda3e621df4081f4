"""Shared fixtures: a controlled (virtual) clock for limiter logic, and a real local server."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

import ratelab as rl
from ratelab.testing import VirtualClockLoop

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    """A shell that starts the tests as a background job (``make test &``, ``nohup``) sets
    SIGINT to "ignore" for them, and every process they start inherits that: then no
    Ctrl-C test can pass (``serve`` and the multi-process children never see the signal,
    ``_thread.interrupt_main`` does nothing). The tests are about Ctrl-C, so this process
    gets Python's normal handler back; its children, started after, get the default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
