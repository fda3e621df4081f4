"""The wall clock a response's absolute reset times are written and read against.

Some header styles give a reset as a moment (GitHub: epoch seconds; Anthropic: an RFC 3339
date), not as a delay. Server and client must read one clock for those to mean the same
instant. In a real run that is ``time.time()``. On a virtual clock (``rl.simulate``) the loop
carries ``epoch_offset_s`` and the wall clock is ``loop.time() + epoch_offset_s``, so a
simulated server and the simulated client agree, and a simulated day is a day of dates."""

from __future__ import annotations

import asyncio
import time

__all__ = ["epoch_s"]


def epoch_s(loop: asyncio.AbstractEventLoop | None = None) -> float:
    """Seconds since the Unix epoch now, on ``loop``'s wall clock (the running loop's if
    ``loop`` is None, ``time.time()`` outside one)."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return time.time()
    offset = getattr(loop, "epoch_offset_s", None)
    if offset is None:
        return time.time()
    return loop.time() + offset
