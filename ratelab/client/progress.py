"""The progress bar of a run (one process or many): a tqdm bar fed with a running count.

tqdm starts a ``tqdm_monitor`` thread in ``__new__`` for every bar of a class whose
``monitor_interval`` is non-zero, disabled bars included, and a disabled bar never stops it;
ratelab's bars are of :class:`Bar`, with the monitor off, so no thread outlives a run.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from ratelab.experiment.experiment import Experiment

__all__ = ["Bar", "Progress"]


class Bar(tqdm):  # type: ignore[misc]  # tqdm.auto's class: the notebook widget in Jupyter
    """tqdm's bar with no monitor thread (it only splits over-long ``miniters`` waits)."""

    monitor_interval = 0


class Progress:
    """A tqdm bar (done/total, live rate) fed with a running count; a no-op when disabled
    (no bar is made at all)."""

    def __init__(self, experiment: Experiment, enabled: bool, *, desc: str | None = None) -> None:
        desc = experiment.label if desc is None else desc
        self.bar = Bar(total=experiment.requests, desc=desc, unit="req") if enabled else None
        self.n = 0

    def update_to(self, n: int) -> None:
        if n > self.n:
            if self.bar is not None:
                self.bar.update(n - self.n)
            self.n = n

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
