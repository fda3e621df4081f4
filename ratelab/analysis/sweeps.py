"""A sweep's results: :class:`SweepResult` (one Result and one summary row per grid point)
and :func:`plot_sweep` (a metric against a swept value). Running the sweep is
:func:`ratelab.client.sweep.sweep`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ratelab.analysis.result import Result
from ratelab.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["SweepResult", "axis_label", "plot_sweep"]


@dataclass(frozen=True, eq=False)
class SweepResult:
    """What a sweep ran: ``results`` (one Result per finished point, in grid order),
    ``summary`` (one row per point: the grid values, then the
    :func:`ratelab.analysis.metrics.summary` columns), the ``grid`` as given, whether it was
    ``interrupted``, and the ``partial`` Result of the point that was cut short (if any;
    it is not in ``results`` or ``summary``)."""

    results: list[Result]
    summary: pd.DataFrame
    grid: dict[str, list[Any]] = field(default_factory=dict)
    interrupted: bool = False
    partial: Result | None = None

    def plot(self, *, x: str, y: str, hue: str | None = None, **kwargs: Any) -> Axes:
        """:func:`plot_sweep` of this sweep's summary."""
        return plot_sweep(self.summary, x=x, y=y, hue=hue, **kwargs)

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        keys = ", ".join(f"{k}×{len(v)}" for k, v in self.grid.items())
        state = ", interrupted" if self.interrupted else ""
        return f"<SweepResult {len(self.results)} points ({keys}){state}>"

    def _repr_html_(self) -> str:
        return self.summary._repr_html_()  # type: ignore[operator]


_UNIT_SUFFIXES = (("_per_s", "/s"), ("_s", "s"), ("_ms", "ms"))


def axis_label(column: str) -> str:
    """``steady_rate_per_s`` -> ``steady rate (/s)``, ``latency_s`` -> ``latency (s)``."""
    for suffix, unit in _UNIT_SUFFIXES:
        if column.endswith(suffix) and len(column) > len(suffix):
            return f"{column[: -len(suffix)].replace('_', ' ')} ({unit})"
    return column.replace("_", " ")


def plot_sweep(
    summary: pd.DataFrame | SweepResult,
    *,
    x: str,
    y: str,
    hue: str | None = None,
    ax: Axes | None = None,
    expected: Callable[[np.ndarray], np.ndarray] | None = None,
    expected_label: str = "expected",
) -> Axes:
    """One line with markers per ``hue`` value: ``y`` against ``x`` from a sweep summary.

    Axis labels carry the unit from the column name (``_s`` -> s, ``_per_s`` -> /s).
    ``expected``, a function of the x values (numeric x only), is drawn as a dashed grey
    curve, e.g. ``expected=lambda lat: np.minimum(20, 10 / lat)``.
    """
    import matplotlib.pyplot as plt

    df = summary.summary if isinstance(summary, SweepResult) else summary
    for name, col in (("x", x), ("y", y), ("hue", hue)):
        if col is not None and col not in df.columns:
            raise ConfigError(name, col, f"must be a column of the summary: {list(df.columns)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    groups: list[tuple[Any, pd.DataFrame]] = (
        [(None, df)] if hue is None else list(df.groupby(hue, sort=False, dropna=False))
    )
    numeric_x = pd.api.types.is_numeric_dtype(df[x])
    for i, (value, g) in enumerate(groups):
        if numeric_x:
            g = g.sort_values(x, kind="stable")
        label = y if hue is None else f"{value}"
        ax.plot(g[x].to_numpy(), g[y].to_numpy(), marker="o", color=f"C{i % 10}",
                label=label, gid="sweep")  # fmt: skip
    if expected is not None:
        if not numeric_x:
            raise ConfigError("expected", expected, f"needs a numeric x column, not {x!r}")
        xs = df[x].to_numpy(dtype=np.float64)
        xs = xs[np.isfinite(xs)]
        if xs.size:
            grid = np.linspace(xs.min(), xs.max(), 200)
            ax.plot(grid, np.asarray(expected(grid), dtype=np.float64), color="0.35",
                    linestyle="--", linewidth=1.2, label=expected_label, gid="expected",
                    zorder=1.5)  # fmt: skip
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    bottom, top = ax.get_ylim()
    if bottom > 0 and math.isfinite(top):
        ax.set_ylim(0, top * 1.05)
    ax.grid(True, alpha=0.3)
    if hue is not None or expected is not None:
        ax.legend(title=hue, fontsize="small")
    ax.set_title(f"{axis_label(y)} vs {axis_label(x)}", fontsize="medium")
    return ax
