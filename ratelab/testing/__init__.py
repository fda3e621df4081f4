"""Helpers for testing rate-limit code exactly, public as ``trio.testing`` is.

- :class:`VirtualClockLoop`, :func:`run_virtual`: an event loop whose clock jumps to the
  next timer, so limiter and engine schedules are asserted exactly, without sleeping;
- :class:`ScriptedTransport`: a transport with no network (aiohttp's pool rules, a latency on the
  loop's clock, scripted answers), so the whole engine runs on the virtual clock;
- :func:`make_frame`: a records frame with the schema's columns from a few given ones;
- :mod:`ratelab.testing.redis`: a throwaway ``redis-server`` on 127.0.0.1.
"""

from __future__ import annotations

from ratelab.testing.frames import make_frame
from ratelab.testing.transport import ScriptedTransport, SentRequest
from ratelab.testing.virtual_clock import TICK_S, VirtualClockLoop, run_virtual

__all__ = [
    "TICK_S",
    "ScriptedTransport",
    "SentRequest",
    "VirtualClockLoop",
    "make_frame",
    "run_virtual",
]
