"""Result: what one run recorded — the frame, the experiment that made it, and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .config import Experiment

__all__ = ["Result"]


@dataclass(frozen=True, eq=False)
class Result:
    """One run: ``df`` (one row per request attempt, see :mod:`ratelab.records`),
    ``experiment``, ``meta`` (versions, platform, start time, seed, wall time, interrupted)
    and ``server_log`` (the LocalServer's own view, on the same clock; None otherwise)."""

    df: pd.DataFrame
    experiment: Experiment
    meta: dict[str, Any] = field(default_factory=dict)
    server_log: pd.DataFrame | None = None

    @property
    def label(self) -> str:
        """The run's name in tables and legends (the strategy's repr unless named)."""
        return self.experiment.label

    @property
    def interrupted(self) -> bool:
        """True when the run was cancelled before every request finished."""
        return bool(self.meta.get("interrupted", False))
