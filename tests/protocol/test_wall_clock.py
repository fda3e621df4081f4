"""The wall clock both sides of a run read absolute resets against."""

from __future__ import annotations

import asyncio
import time

from ratelab.protocol.wall_clock import epoch_s
from ratelab.testing import VirtualClockLoop, run_virtual


def test_outside_a_loop_it_is_time_time() -> None:
    before = time.time()
    now = epoch_s()
    assert before <= now <= time.time()


def test_on_a_virtual_clock_it_moves_with_virtual_time() -> None:
    async def an_hour() -> tuple[float, float]:
        start = epoch_s()
        await asyncio.sleep(3600)
        return start, epoch_s()

    start, end = run_virtual(an_hour())
    assert end - start == 3600.0


def test_a_virtual_loop_can_start_at_a_chosen_date() -> None:
    loop = VirtualClockLoop(epoch_offset_s=1_767_225_600.0)  # 2026-01-01T00:00:00Z
    try:
        assert epoch_s(loop) == 1_767_225_600.0
        assert loop.run_until_complete(asyncio.sleep(60, result=None)) is None
        assert epoch_s(loop) == 1_767_225_660.0
    finally:
        loop.close()
