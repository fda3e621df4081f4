"""The progress bar of a run (one process or many): a tqdm bar fed with a running count."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from ratelab.experiment.experiment import Experiment

__all__ = ["Progress"]


class Progress:
    """A tqdm bar (done/total, live rate) fed with a running count; a no-op when disabled."""

    def __init__(self, experiment: Experiment, enabled: bool, *, desc: str | None = None) -> None:
        kwargs: dict[str, Any] = {} if enabled else {"disable": True}
        desc = experiment.label if desc is None else desc
        self.bar = tqdm(total=experiment.requests, desc=desc, unit="req", **kwargs)
        self.n = 0

    def update_to(self, n: int) -> None:
        if n > self.n:
            self.bar.update(n - self.n)
            self.n = n

    def close(self) -> None:
        self.bar.close()
