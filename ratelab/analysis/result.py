"""Result: what one run recorded — the frame, the experiment that made it, and metadata.

    result = rl.run(exp)
    result.save("data/recipe.parquet")     # one Parquet file: records + experiment + meta
    same = rl.load("data/recipe.parquet")  # dtypes, experiment, meta and server log intact

The file layout, and the reading and writing, are in :mod:`ratelab.analysis.files`.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ratelab.analysis.files import empty_headers, empty_state, read_result, write_result
from ratelab.errors import ConfigError
from ratelab.experiment.experiment import Experiment

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ratelab.analysis.metrics import WindowStats

__all__ = ["Result", "load"]

_HEADLINE_CACHE = "_headline_cache"  # instance attribute holding _headline()'s figures


# --------------------------------------------------------------------------- Result


@dataclass(frozen=True, eq=False, repr=False)
class Result:
    """One run: ``df`` (one row per request attempt, see :mod:`ratelab.records.store`),
    ``experiment``, ``meta`` (versions, platform, start time, seed, wall time, interrupted)
    and ``server_log`` (the LocalServer's own view, on the same clock; None otherwise).

    ``headers``: the recorded response headers (rate-limit ones and the Experiment's
    ``record_headers``), one row per header per attempt: ``request_id``, ``attempt``,
    ``name`` (lower case), ``value`` (str); empty when none were sent (or the run predates
    it). Join it to ``df`` on (request_id, attempt) for times.

    ``state``: the limiters' and the connection pool's state sampled during the run (every
    ``state_interval_s``, 0.05 s by default), a long frame: ``t_s`` (run clock), ``guard``
    (the strategy part's label, e.g. ``RateLimit(20)``, or ``pool``), ``quantity`` (e.g.
    ``level``, ``waiters``, ``in_use``, ``queued``), ``value``; drawn by
    :func:`ratelab.analysis.state_plots.plot_state`. Empty when nothing was sampled (or
    the run predates it). A run split across processes (``processes > 1``) has a
    ``process`` column (int16) last, as its ``df``: every process's samples of its own
    guards and pool, on the merged clock (:mod:`ratelab.client.processes`)."""

    df: pd.DataFrame
    experiment: Experiment
    meta: dict[str, Any] = field(default_factory=dict)
    server_log: pd.DataFrame | None = None
    headers: pd.DataFrame = field(default_factory=lambda: empty_headers())
    state: pd.DataFrame = field(default_factory=lambda: empty_state())

    def __post_init__(self) -> None:
        if self.headers is None:
            object.__setattr__(self, "headers", empty_headers())
        if self.state is None:
            object.__setattr__(self, "state", empty_state())

    @property
    def label(self) -> str:
        """The run's name in tables and legends (the strategy's repr unless named)."""
        return self.experiment.label

    @property
    def interrupted(self) -> bool:
        """True when the run was cancelled before every request finished."""
        return bool(self.meta.get("interrupted", False))

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the run to one Parquet file (atomically; parent directories are created).

        Returns the path. :func:`load` reads it back exactly: the frame with its dtypes,
        the experiment (a LocalServer target is stored as its URL), ``meta`` and the
        server log. See :func:`ratelab.analysis.files.write_result`.
        """
        return write_result(
            _file_path("path", path),
            df=self.df,
            experiment=self.experiment,
            meta=self.meta,
            server_log=self.server_log,
            headers=self.headers,
            state=self.state,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Result:
        """Read a file written by :meth:`save` (same as :func:`ratelab.analysis.result.load`)."""
        return load(path)

    # -- analysis ------------------------------------------------------------------------
    def summary(self, *, window_s: float = 1.0) -> pd.DataFrame:
        """One row of headline numbers (see :func:`ratelab.analysis.metrics.summary`)."""
        from ratelab.analysis.metrics import summary

        return summary(self, window_s=window_s)

    def throughput(self, *, window_s: float = 1.0) -> pd.DataFrame:
        """Sent and completed per second in bins (:func:`ratelab.analysis.metrics.throughput`)."""
        from ratelab.analysis.metrics import throughput

        return throughput(self, window_s=window_s)

    def concurrency(self) -> pd.DataFrame:
        """Waiting and in-flight counts over time (``ratelab.analysis.metrics.concurrency``)."""
        from ratelab.analysis.metrics import concurrency

        return concurrency(self)

    def latency(self) -> np.ndarray:
        """Latencies in seconds (see :func:`ratelab.analysis.metrics.latency`)."""
        from ratelab.analysis.metrics import latency

        return latency(self)

    def phase_means(self) -> pd.DataFrame:
        """Mean time per phase (see :func:`ratelab.analysis.metrics.phase_means`)."""
        from ratelab.analysis.metrics import phase_means

        return phase_means(self)

    def windows(self, *, window_s: float = 1.0, limit: float | None = None) -> WindowStats:
        """The busiest sliding window of sent requests (:func:`~ratelab.analysis.metrics.windows`).

        Without ``limit``, a strategy with a rate limit is checked against its rate times
        ``window_s``: for a run split across processes, what they allow together
        (:meth:`~ratelab.experiment.strategies.Strategy.rate_limit_across`).
        """
        from ratelab.analysis.metrics import windows

        if limit is None:
            processes = int(self.meta.get("processes", 1) or 1)
            rate = self.experiment.strategy.rate_limit_across(processes)
            if rate is not None:
                limit = rate * window_s
        return windows(self, window_s=window_s, limit=limit)

    def dashboard(self, **kwargs: Any) -> Figure:
        """The one-run figure (see :func:`ratelab.analysis.plots.dashboard`)."""
        from ratelab.analysis.plots import dashboard

        return dashboard(self, **kwargs)

    # -- display -------------------------------------------------------------------------
    def _headline(self) -> dict[str, Any]:
        """The numbers shown in notebooks (``_repr_html_``). Working them out scans the whole
        frame (:func:`~ratelab.analysis.metrics.summary`), so it is done once and the figures
        are kept on the instance (a Result is frozen: its frame is not meant to change)."""
        cached = self.__dict__.get(_HEADLINE_CACHE)
        if cached is not None:
            return cached
        row = self.summary().iloc[0]
        headline = {
            "requests": int(row["requests"]),
            "ok": int(row["ok"]),
            "errors": int(row["errors"]),
            "rate_per_s": float(row["rate_per_s"]),
            "steady_rate_per_s": float(row["steady_rate_per_s"]),
            "p50_ms": float(row["latency_p50_s"]) * 1e3,
            "p99_ms": float(row["latency_p99_s"]) * 1e3,
            "peak_in_flight": int(row["peak_in_flight"]),
            "wall_s": self.meta.get("wall_s"),
        }
        object.__setattr__(self, _HEADLINE_CACHE, headline)  # not a field: frozen allows it
        return headline

    def __repr__(self) -> str:
        """Label, requests, rows, wall time: read from attributes, nothing scans the frame
        (a million-row Result prints at once). The headline figures are in
        ``_repr_html_`` and :meth:`summary`."""
        if self.interrupted:
            state, requests = ", interrupted", f"{self.experiment.requests} requests planned"
        else:
            state, requests = "", f"{self.experiment.requests} requests"
        return (
            f"<Result {self.label!r}{state}: {requests}, {len(self.df)} rows, "
            f"wall {_seconds(self.meta.get('wall_s'))}>"
        )

    __str__ = __repr__

    def _repr_html_(self) -> str:
        h = self._headline()
        rows = [
            ("requests", f"{h['requests']:,}"),
            ("ok / errors", f"{h['ok']:,} / {h['errors']:,}"),
            ("achieved rate", _num(h["rate_per_s"], "/s")),
            ("steady rate", _num(h["steady_rate_per_s"], "/s")),
            ("latency p50 / p99", f"{_num(h['p50_ms'])} / {_num(h['p99_ms'], ' ms')}"),
            ("peak in flight", str(h["peak_in_flight"])),
            ("wall time", _seconds(h["wall_s"])),
        ]
        if self.interrupted:
            rows.append(("interrupted", "yes: partial result"))
        cells = "".join(
            f'<tr><th style="text-align:left">{html.escape(k)}</th>'
            f'<td style="text-align:right">{html.escape(v)}</td></tr>'
            for k, v in rows
        )
        return (
            '<div class="ratelab-result">'
            f"<strong>{html.escape(self.label)}</strong>"
            f'<table style="margin-top:0.3em">{cells}</table></div>'
        )


def _num(x: float, unit: str = "") -> str:
    """3 significant digits (no decimals from 100 up) and the unit; ``n/a`` when undefined."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return (f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}") + unit


def _seconds(x: Any) -> str:
    if not isinstance(x, int | float) or not math.isfinite(x):
        return "n/a"
    return f"{x:.2f} s"


# --------------------------------------------------------------------------- load


def load(path: str | os.PathLike[str]) -> Result:
    """Read a result written by :meth:`Result.save` (``rl.load``).

    Raises :class:`~ratelab.errors.ResultFileError`, naming the file, when it is missing,
    is not a ratelab result, is truncated or corrupt, or was written by a newer ratelab.
    """
    parts = read_result(_file_path("path", path))
    return Result(
        df=parts.df,
        experiment=parts.experiment,
        meta=parts.meta,
        server_log=parts.server_log,
        headers=parts.headers,
        state=parts.state,
    )


def _file_path(parameter: str, path: object) -> str | os.PathLike[str]:
    """``path`` if it names a file: a non-empty str or os.PathLike (not None, not "")."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
        if isinstance(path, bytes):
            return path  # type: ignore[return-value]
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(parameter, path, "must be a file path such as 'runs/run.parquet'")
    return path
