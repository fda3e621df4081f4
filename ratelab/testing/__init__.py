"""Helpers for testing rate-limit code exactly, public as ``trio.testing`` is.

- :class:`VirtualClockLoop`, :func:`run_virtual`: an event loop whose clock jumps to the
  next timer, so limiter and engine schedules are asserted exactly, without sleeping;
- :func:`make_frame`: a records frame with the documented columns from a few given times;
- :mod:`ratelab.testing.redis`: a throwaway ``redis-server`` on 127.0.0.1.
"""

from __future__ import annotations

from ratelab.testing.virtual_clock import TICK_S, VirtualClockLoop, run_virtual

__all__ = ["TICK_S", "VirtualClockLoop", "run_virtual"]
