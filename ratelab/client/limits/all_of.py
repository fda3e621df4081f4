"""``rl.AllOf``: several limits taken together, never one held while waiting for another.

``a + b`` acquires ``a``'s guard, then ``b``'s: a request that gets a request slot (or a
connection slot) and then waits for tokens has spent the first while it waits. Under a
server that counts both, the client's request limit then no longer says when requests are
SENT: those that waited for tokens go out bunched behind the tokens, faster than the
request limit allows.

:class:`AllOfGuard` instead asks each part when it would have room for this request
(``_ready_at``: an ideal time on the loop clock, ``inf`` for "after a release"), waits for
the latest of those (for a release when a concurrency part is full), asks again, and when
every part has room takes them all in one step (``_take``, which never suspends), so no
other request runs between the parts. Waiters go first come, first served (an
``asyncio.Lock``). A part's books use the moment all parts had room, so a timer's lateness
carries forward as in the single guards (:mod:`ratelab.client.guards`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from ratelab.client.guards import Guard
from ratelab.client.loops import timer_delay_s

__all__ = ["AllOfGuard"]


class AllOfGuard(Guard):
    """The parts' guards (each built for this AllOf alone), taken atomically."""

    __slots__ = ("_lock", "_loop", "_parts", "_released")

    def __init__(self, parts: Sequence[Any]) -> None:
        self._parts = tuple(parts)
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._released: asyncio.Event | None = None  # set by a release while one waits

    async def acquire(self, endpoint: str, cost: float | None = None) -> None:
        loop = self._loop
        parts = self._parts
        arrival = loop.time()
        async with self._lock:
            while True:
                at = max(p._ready_at(endpoint, cost, arrival) for p in parts)
                if at == math.inf:  # a concurrency part is full: wait for a release
                    released = self._released = asyncio.Event()
                    await released.wait()
                    arrival = max(arrival, loop.time())  # nothing is booked before this
                    continue
                now = loop.time()
                if at > now:
                    await asyncio.sleep(timer_delay_s(loop, at - now))
                    arrival = at  # the ideal time it waited for: no part books before it
                    continue  # ask again: only releases and time happened, so all have room
                for p in parts:  # all at once: none of these suspends
                    await p._take(endpoint, cost, at)
                return

    def release(self, endpoint: str) -> None:
        for p in self._parts:
            p.release(endpoint)
        released = self._released
        if released is not None:
            released.set()
