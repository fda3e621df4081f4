"""The event loop a run uses: asyncio's own (the default) or uvloop (``loop="uvloop"``).

uvloop differs from asyncio in two ways that matter to a measuring tool (both measured,
``benchmarks/bench_uvloop.py``):

* ``loop.time()`` is libuv's cached clock in whole milliseconds. The engine therefore stamps
  with ``time.monotonic()`` (the same clock, full resolution) whenever ``loop.time()`` is
  known to be a view of it (asyncio's loop, uvloop); a loop with a clock of its own (a
  test's virtual clock) is read through ``loop.time()``.
* Its timers have millisecond resolution: ``call_at``/``sleep`` less than 1 ms ahead fire on
  the next iteration. A limiter that waits for a sub-millisecond gap then wakes, finds no
  capacity, and waits again: a busy loop (aiolimiter at 5,000/s used a whole core).
  :func:`timer_delay_s` rounds such waits up to the timer's resolution; the guards use it,
  so a wait ends at most one tick late and the rate over time is unchanged.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import time
from collections.abc import Callable

from ratelab.errors import ConfigError
from ratelab.experiment.loop_option import LOOPS, check_loop

__all__ = [
    "LOOPS",
    "check_loop",
    "is_uvloop",
    "loop_factory",
    "loop_name",
    "stamp_clock",
    "timer_delay_s",
    "timer_resolution_s",
]

_UVLOOP_TICK_S = 1e-3


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function that makes a new loop of the named kind."""
    if check_loop(name) == "asyncio":
        return asyncio.new_event_loop
    if importlib.util.find_spec("uvloop") is None:
        raise ConfigError(
            "loop", name, "needs the uvloop package: pip install 'ratelab[uvloop]' (or uvloop)"
        )
    import uvloop

    return uvloop.new_event_loop


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.partition(".")[0] == "uvloop"


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"`` (any other loop is named by its class)."""
    if is_uvloop(loop):
        return "uvloop"
    if isinstance(loop, asyncio.BaseEventLoop):
        return "asyncio"
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


def stamp_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The clock to stamp records with: ``time.monotonic`` where ``loop.time()`` is (a
    coarser view of) it, else ``loop.time`` itself (so a virtual clock drives the records)."""
    if type(loop).time is asyncio.BaseEventLoop.time or is_uvloop(loop):
        return time.monotonic
    return loop.time


def timer_resolution_s(loop: asyncio.AbstractEventLoop) -> float:
    """The granularity below which the loop's timers fire at once (0: no such floor)."""
    return _UVLOOP_TICK_S if is_uvloop(loop) else 0.0


def timer_delay_s(loop: asyncio.AbstractEventLoop, delay_s: float) -> float:
    """``delay_s`` rounded up to whole timer ticks, so a short wait really waits."""
    tick = timer_resolution_s(loop)
    if tick == 0.0 or delay_s <= 0:
        return delay_s
    return math.ceil(delay_s / tick - 1e-9) * tick
