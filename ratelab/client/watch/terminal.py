"""The live view in a terminal: one line of headline numbers, rewritten in place.

    12.3 s  480/2000 done  20.0/s now  in flight 10  waiting: limiter 5, pool 0
    200:460 429:20  errors 0  RateLimit(20) level 19 waiters 5      (on one line)

Written with a carriage return and ANSI "erase to end of line" (``\\r\\x1b[K``), cut to the
terminal's width (a wrapped line could not be rewritten), at most every ``refresh_s`` of
wall time; the last line stays when the run ends. Plain ANSI: every terminal ratelab runs in
understands these two codes, and no extra package is needed.
"""

from __future__ import annotations

import shutil
import time
from typing import IO, Any

from ratelab.client.watch.snapshot import Snapshot, take

__all__ = ["TerminalView", "format_snapshot"]

#: Wall seconds between two refreshes.
REFRESH_S = 0.25


def _num(x: float) -> str:
    return f"{x:.0f}" if x == int(x) or abs(x) >= 100 else f"{x:.3g}"


def format_snapshot(snap: Snapshot) -> str:
    """The one-line text of a snapshot (no control codes)."""
    parts = [
        f"{snap.t_s:6.1f} s",
        f"{snap.done}/{snap.total} done",
        f"{snap.rate_per_s:.1f}/s now",
        f"in flight {snap.in_flight}",
        f"waiting: limiter {snap.waiting_limiter}, pool {snap.waiting_pool}",
    ]
    codes = " ".join(f"{c}:{k}" for c, k in sorted(snap.statuses.items()) if c)
    if codes:
        parts.append(codes)
    parts.append(f"errors {snap.errors}")
    by_guard: dict[str, list[str]] = {}
    for (guard, quantity), value in snap.state.items():
        by_guard.setdefault(guard, []).append(f"{quantity} {_num(value)}")
    parts += [f"{g} " + " ".join(qs) for g, qs in by_guard.items()]
    return "  ".join(parts)


class TerminalView:
    """Progress-bar compatible (``update_to``, ``close``): rewrites one line on ``stream``."""

    def __init__(
        self, engines: list[Any], stream: IO[str], *, refresh_s: float = REFRESH_S
    ) -> None:
        self.engines = engines
        self.stream = stream
        self.refresh_s = refresh_s
        self.last = -float("inf")
        self.lines = 0

    def update_to(self, n: int = 0) -> float:
        """Rewrite the line if it is due; returns the wall seconds until the next is due."""
        now = time.monotonic()
        if now - self.last < self.refresh_s:
            return self.last + self.refresh_s - now
        self.last = now
        self.draw()
        return self.refresh_s

    def draw(self) -> None:
        snap = take(self.engines)
        if snap is None:
            return
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r\x1b[K" + format_snapshot(snap)[:width])
        self.stream.flush()
        self.lines += 1

    def close(self, result: Any = None) -> None:
        self.draw()
        if self.lines:
            self.stream.write("\n")
            self.stream.flush()
