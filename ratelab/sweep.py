"""Parameter sweeps: run an Experiment over a grid of values and tabulate each point.

    base = rl.Experiment(target=rl.LocalServer(), requests=60, workers=20,
                         strategy=rl.RateLimit(20) + rl.ConnectionLimit(10), seed=1)
    sw = rl.sweep(base, latency=[rl.Fixed(0.25), rl.Fixed(0.5), rl.Fixed(1.0)])
    sw.summary[["latency_s", "steady_rate_per_s"]]   # ~ min(20, 10 / latency)
    rl.plot_sweep(sw.summary, x="latency_s", y="steady_rate_per_s")

Grid keys are :class:`~ratelab.config.Experiment` field names, plus ``latency``: the
server's service delay, for which each point gets a fresh ``LocalServer`` (seeded with the
experiment's seed). Points run one after another, in the order of the cartesian product
(the last key varies fastest).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import runner
from .analysis import summary as _summary
from .config import Arrivals, Experiment, is_loopback
from .distributions import Distribution, as_distribution
from .errors import ConfigError
from .result import Result
from .strategies import Strategy

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["LATENCY_KEY", "SweepResult", "plot_sweep", "sweep", "valid_keys"]

#: The grid key that varies the LocalServer's latency (not an Experiment field).
LATENCY_KEY = "latency"


def valid_keys() -> list[str]:
    """Every grid key :func:`sweep` accepts: the Experiment's fields and ``latency``."""
    return sorted([f.name for f in dataclasses.fields(Experiment)] + [LATENCY_KEY])


@dataclass(frozen=True, eq=False)
class SweepResult:
    """What a sweep ran: ``results`` (one Result per finished point, in grid order),
    ``summary`` (one row per point: the grid values, then the
    :func:`ratelab.analysis.summary` columns), the ``grid`` as given, whether it was
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


# --------------------------------------------------------------------------- the grid


def _check_grid(experiment: Experiment, grid: Mapping[str, Any]) -> dict[str, list[Any]]:
    valid = valid_keys()
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if key not in valid:
            raise ConfigError(key, values, f"is not a sweep key; valid: {', '.join(valid)}")
        if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence):
            raise ConfigError(key, values, "must be a list of values to sweep, e.g. [1, 2, 4]")
        if len(values) == 0:
            raise ConfigError(key, values, "must be a non-empty list of values to sweep")
        out[key] = list(values)
    if LATENCY_KEY in out:
        if "target" in out:
            raise ConfigError(LATENCY_KEY, out[LATENCY_KEY], "cannot be swept together with target")
        target = experiment.target
        if isinstance(target, str) and not is_loopback(target):
            raise ConfigError(
                LATENCY_KEY,
                out[LATENCY_KEY],
                "sweeps a LocalServer's latency: the experiment's target must be a "
                f"rl.LocalServer or a http://127.0.0.1 URL, not {target!r}",
            )
        out[LATENCY_KEY] = [as_distribution(LATENCY_KEY, v) for v in out[LATENCY_KEY]]
        for v in out[LATENCY_KEY]:
            if v is None:
                raise ConfigError(LATENCY_KEY, v, "each value must be a distribution or number")
    return out


def _display(value: Any) -> Any:
    """A summary cell for a grid value: strategies, distributions, arrivals as their repr."""
    if isinstance(value, Strategy | Distribution | Arrivals):
        return repr(value)
    if isinstance(value, Mapping):
        return repr(dict(value))
    if value is None:
        return "None"  # a label ("no think time"), not a missing value
    if isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _point_columns(exp: Experiment, point: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in point.items():
        if key == LATENCY_KEY:
            row["latency_s"] = value.mean_s
            row["latency"] = repr(value)
        else:
            # the Experiment's validated value: "uniform:0.05,0.2" shows as Uniform(0.05, 0.2)
            row[key] = _display(getattr(exp, key))
    return row


def _summary_frame(rows: list[dict[str, Any]], results: list[Result]) -> pd.DataFrame:
    if not results:
        return pd.DataFrame(index=pd.RangeIndex(0, name="point"))
    stats = _summary(results).reset_index()
    grid = pd.DataFrame(rows)
    keep = [c for c in stats.columns if c not in grid.columns]
    out = pd.concat([grid, stats[keep]], axis=1)
    out.index.name = "point"
    return out


# --------------------------------------------------------------------------- sweep


def sweep(experiment: Experiment, *, progress: bool = True, **grid: Any) -> SweepResult:
    """Run ``experiment`` once per point of the cartesian product of ``grid``.

    ``grid`` maps Experiment field names (``strategy=[...]``, ``workers=[...]``,
    ``think_time=[...]``, ``requests=[...]``, ...) to lists of values; ``latency=[...]``
    (distributions or seconds) runs each point against a fresh
    ``LocalServer(latency=value, seed=experiment.seed)``, so the target must be a
    LocalServer or a 127.0.0.1 URL. Every point is validated before the first runs.

    One progress bar counts points (``progress=False`` hides it). A KeyboardInterrupt (or
    an interrupted run) stops the sweep: the points done so far come back, with
    ``interrupted=True``.
    """
    if not isinstance(experiment, Experiment):
        raise ConfigError("experiment", experiment, "must be an rl.Experiment(...)")
    checked = _check_grid(experiment, grid)
    keys = list(checked)
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*checked.values())]
    # validate every point up front: a bad value fails before anything runs
    exps = [experiment.replace(**{k: v for k, v in p.items() if k != LATENCY_KEY}) for p in points]

    results: list[Result] = []
    rows: list[dict[str, Any]] = []
    interrupted = False
    partial: Result | None = None
    bar_kwargs: dict[str, Any] = {} if progress else {"disable": True}  # honours TQDM_DISABLE
    bar = tqdm(total=len(points), desc="sweep", unit="point", **bar_kwargs)
    try:
        for point, exp in zip(points, exps, strict=True):
            bar.set_postfix_str(", ".join(f"{k}={_display(v)}" for k, v in point.items()))
            try:
                result = _run_point(exp, point, experiment.seed)
            except KeyboardInterrupt:
                interrupted = True
                break
            if result.interrupted:
                interrupted, partial = True, result
                break
            results.append(result)
            rows.append(_point_columns(exp, point))
            bar.update(1)
    finally:
        bar.close()
    return SweepResult(
        results=results,
        summary=_summary_frame(rows, results),
        grid=checked,
        interrupted=interrupted,
        partial=partial,
    )


def _run_point(exp: Experiment, point: Mapping[str, Any], seed: int | None) -> Result:
    if LATENCY_KEY not in point:
        return runner.run(exp, progress=False)
    from .server import LocalServer

    with LocalServer(latency=point[LATENCY_KEY], seed=seed) as server:
        return runner.run(exp.replace(target=server), progress=False)


# --------------------------------------------------------------------------- plot

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


_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """``"RateLimit(20) + ConnectionLimit(10)"`` -> ``"ratelimit-20-connectionlimit-10"``."""
    return _SLUG.sub("-", text.lower()).strip("-") or "run"
