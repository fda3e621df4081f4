"""``live=True``: which view a run shows, and pacing a simulation to watch it.

:func:`live_view` picks, for ``rl.run(exp, live=True)`` / ``arun`` / ``rl.simulate``:

- inside a Jupyter kernel: :class:`~ratelab.client.watch.notebook_view.NotebookView` (a
  figure updated in place, the final static figure left in the cell);
- in a terminal (the stream is a tty): :class:`~ratelab.client.watch.terminal.TerminalView`
  (one line rewritten in place);
- elsewhere (output piped to a file, CI logs): the ordinary progress bar, since a line
  rewritten with control codes would only litter a log.

Every view is fed like the progress bar (``update_to``, from the engine's ticker or from
the thread that waits for the run) and reads the run's RecordStore itself.

:func:`pace` slows a virtual-clock run down to ``speed`` virtual seconds per wall second,
so a simulation can be watched (``rl.simulate(exp, server, live=True, live_speed=1)``).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from typing import IO, Any

from ratelab.client.progress import Progress
from ratelab.errors import ConfigError
from ratelab.experiment.experiment import Experiment

__all__ = ["check_speed", "close_view", "in_kernel", "live_view", "pace"]

#: Virtual seconds between two pacing checks, per unit of speed (so 20 ms of wall time).
PACE_STEP_S = 0.02


def in_kernel() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel: JupyterLab, VS Code)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def live_view(
    exp: Experiment,
    *,
    live: bool,
    progress: bool,
    engines: list[Any],
    stream: IO[str] | None = None,
) -> Any:
    """The view of a run: a live one (notebook or terminal) or the progress bar."""
    if live is not True and live is not False:
        raise ConfigError("live", live, "True (watch the run as it goes) or False")
    if not live:
        return Progress(exp, progress)
    if stream is None and in_kernel():
        from ratelab.client.watch.notebook_view import NotebookView

        rate = getattr(exp.strategy, "rate_limit_per_s", None)
        return NotebookView(
            engines, label=exp.label, workers=exp.workers, rate_per_s=rate,
            expected_s=exp.requests / rate if rate else None,
        )  # fmt: skip
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        from ratelab.client.watch.terminal import TerminalView

        return TerminalView(engines, stream)
    return Progress(exp, True)  # not a terminal: the progress bar


def close_view(view: Any, result: Any) -> None:
    """Close a view; a live one draws its last frame (the final figure from ``result``,
    the partial Result of an interrupted or failed run, or None)."""
    if isinstance(view, Progress):
        view.close()
    else:
        view.close(result)


def check_speed(value: object) -> float:
    """``live_speed``: virtual seconds per wall second, > 0 (``math.inf``: unpaced)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(
            "live_speed", value,
            "virtual seconds shown per wall second, > 0 (1: real time; math.inf: unpaced)",
        )  # fmt: skip
    return float(value)


async def pace(speed: float) -> None:
    """Keep the running (virtual-clock) loop at most ``speed`` times ahead of the wall
    clock: every ``PACE_STEP_S * speed`` of loop time, block the loop's thread until the
    wall clock has caught up. Runs until cancelled."""
    if math.isinf(speed):
        return
    loop = asyncio.get_running_loop()
    v0, w0 = loop.time(), time.perf_counter()
    step = PACE_STEP_S * speed
    while True:
        await asyncio.sleep(step)
        ahead = (loop.time() - v0) / speed - (time.perf_counter() - w0)
        if ahead > 0:
            time.sleep(ahead)  # the virtual clock stands still meanwhile
