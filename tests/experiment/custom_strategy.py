"""The README's "Your own strategy" example, in an importable module (child processes of a
``processes=N`` run import it: a class defined in a test function or a notebook cannot
reach them). The block between the markers is the README's code block, verbatim
(tests/experiment/test_custom_strategy.py checks that)."""

from __future__ import annotations

# --- README example: begin
import asyncio
from collections import defaultdict
from dataclasses import dataclass

import ratelab as rl


@dataclass(frozen=True)
class PerEndpointConcurrency(rl.Strategy):
    """At most ``n`` requests in flight to each endpoint."""

    n: int

    def guard(self) -> rl.Guard:
        return PerEndpointGuard(self.n)


class PerEndpointGuard(rl.Guard):
    def __init__(self, n: int) -> None:  # built inside the running loop, once per run
        self.semaphores = defaultdict(lambda: asyncio.Semaphore(n))

    async def acquire(self, endpoint: str) -> None:
        await self.semaphores[endpoint].acquire()

    def release(self, endpoint: str) -> None:
        self.semaphores[endpoint].release()


# --- README example: end
