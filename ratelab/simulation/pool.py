"""A connection pool with no sockets and aiohttp's ``TCPConnector`` semantics, for one host.

``limit`` and ``limit_per_host`` cap the connections in use (0: no cap; for one host the
tighter binds). As in aiohttp (``connect`` / ``_wait_for_available_connection`` /
``_release_waiter``): a request that finds a free slot takes it at once, even if others
wait; otherwise it joins a FIFO of waiters. A release frees the slot and wakes the first
waiter, which takes the slot if it is still free when it runs, or else waits again at the
*front* of the queue. A waiter stamps ``pool_queued_s`` when it starts waiting and
``pool_acquired_s`` (and ``sent_s``) when it has the slot, as the aiohttp transport's
pool-stamping connector does.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ratelab.client.transports.base import Stamps, single_host_cap

__all__ = ["SimulatedPool"]


class SimulatedPool:
    """One run's pool: :meth:`acquire` before a request, :meth:`release` after it."""

    __slots__ = ("cap", "in_use", "loop", "max_in_use", "stamps", "waiters")

    def __init__(self, stamps: Stamps, *, limit: int, limit_per_host: int) -> None:
        self.stamps = stamps
        self.cap = single_host_cap(limit, limit_per_host)
        self.in_use = 0
        self.max_in_use = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.loop = asyncio.get_running_loop()

    async def acquire(self, row: int) -> None:
        """Take a connection for ``row``, waiting (and stamping the wait) if the pool is full."""
        cap = self.cap
        if cap and self.in_use >= cap:
            st = self.stamps
            st.store.pool_queued_s[row] = st.now() - st.t0
            front = False
            while True:
                fut = self.loop.create_future()
                if front:  # waited before: back to the front, so it is not starved
                    self.waiters.appendleft(fut)
                else:
                    self.waiters.append(fut)
                try:
                    await fut
                finally:
                    if not fut.done() or fut.cancelled():
                        try:
                            self.waiters.remove(fut)
                        except ValueError:
                            pass
                if self.in_use < cap:
                    break
                front = True
            t = st.now() - st.t0
            st.store.pool_acquired_s[row] = t
            st.store.sent_s[row] = t
        self.in_use += 1
        if self.in_use > self.max_in_use:
            self.max_in_use = self.in_use

    def release(self) -> None:
        """Give the connection back and wake the first waiter (if a slot is free for it)."""
        self.in_use -= 1
        waiters = self.waiters
        if self.cap and self.in_use >= self.cap:
            return
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def state(self) -> dict[str, float]:
        """``in_use``: connections taken; ``queued``: requests waiting for one."""
        queued = sum(not f.done() for f in self.waiters)
        return {"in_use": float(self.in_use), "queued": float(queued)}
