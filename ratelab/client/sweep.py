"""Parameter sweeps: run an Experiment over a grid of values and tabulate each point.

    base = rl.Experiment(target=rl.LocalServer(), requests=60, workers=20,
                         strategy=rl.RateLimit(20) + rl.ConnectionLimit(10), seed=1)
    sw = rl.sweep(base, latency=[rl.Fixed(0.25), rl.Fixed(0.5), rl.Fixed(1.0)])
    sw.summary[["latency_s", "steady_rate_per_s"]]   # ~ min(20, 10 / latency)
    rl.plot_sweep(sw.summary, x="latency_s", y="steady_rate_per_s")

Grid keys are :class:`~ratelab.experiment.experiment.Experiment` field names, plus ``latency``: the
server's service delay, for which each point gets a fresh ``LocalServer`` (seeded with the
experiment's seed). Points run one after another, in the order of the cartesian product
(the last key varies fastest).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ratelab.analysis.metrics import summary as _summary
from ratelab.analysis.result import Result
from ratelab.analysis.sweeps import SweepResult
from ratelab.client import runner
from ratelab.client.progress import Bar
from ratelab.errors import ConfigError
from ratelab.experiment.arrivals import Arrivals
from ratelab.experiment.distributions import Distribution, as_distribution
from ratelab.experiment.experiment import Experiment, is_loopback
from ratelab.experiment.strategies import Strategy

if TYPE_CHECKING:
    from ratelab.server.local import LocalServer

__all__ = ["LATENCY_KEY", "sweep", "valid_keys"]

#: The grid key that varies the LocalServer's latency (not an Experiment field).
LATENCY_KEY = "latency"


def valid_keys() -> list[str]:
    """Every grid key :func:`sweep` accepts: the Experiment's fields and ``latency``."""
    return sorted([f.name for f in dataclasses.fields(Experiment)] + [LATENCY_KEY])


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


def sweep(
    experiment: Experiment,
    *,
    progress: bool = True,
    simulate: bool = False,
    server: LocalServer | None = None,
    **grid: Any,
) -> SweepResult:
    """Run ``experiment`` once per point of the cartesian product of ``grid``.

    ``grid`` maps Experiment field names (``strategy=[...]``, ``workers=[...]``,
    ``think_time=[...]``, ``requests=[...]``, ...) to lists of values; ``latency=[...]``
    (distributions or seconds) runs each point against a fresh
    ``LocalServer(latency=value, seed=experiment.seed)``, so the target must be a
    LocalServer or a 127.0.0.1 URL. Every point is validated before the first runs.

    ``simulate=True`` runs every point with :func:`rl.simulate <ratelab.simulate>` (a
    virtual clock, a simulated server: ``server``, a LocalServer describing it, or None);
    with ``latency=[...]`` each point simulates ``server``'s policies with that latency.

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
    if server is not None and not simulate:
        raise ConfigError("server", server, "is the simulated server: use it with simulate=True")
    if simulate:
        from ratelab.simulation.runner import check_simulation

        for point, exp in zip(points, exps, strict=True):
            check_simulation(exp, _sim_server(server, point, experiment.seed), 0.0)

    results: list[Result] = []
    rows: list[dict[str, Any]] = []
    interrupted = False
    partial: Result | None = None
    bar_kwargs: dict[str, Any] = {} if progress else {"disable": True}  # honours TQDM_DISABLE
    bar = Bar(total=len(points), desc="sweep", unit="point", **bar_kwargs)
    try:
        for point, exp in zip(points, exps, strict=True):
            bar.set_postfix_str(", ".join(f"{k}={_display(v)}" for k, v in point.items()))
            try:
                if simulate:
                    from ratelab.simulation.runner import simulate as _simulate

                    sim_server = _sim_server(server, point, experiment.seed)
                    result = _simulate(exp, sim_server, progress=False)
                else:
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


def _sim_server(
    server: LocalServer | None, point: Mapping[str, Any], seed: int | None
) -> LocalServer | None:
    """The simulated server of a point: ``server``, with the point's latency if it has one."""
    if LATENCY_KEY not in point:
        return server
    from ratelab.server.local import LocalServer

    if server is None:
        return LocalServer(latency=point[LATENCY_KEY], seed=seed)
    return LocalServer(
        latency=point[LATENCY_KEY], seed=server.seed if server.seed is not None else seed,
        rate_limit=server.rate_limit, max_concurrency=server.max_concurrency,
        overload_status=server.overload_status, faults=server.faults,
    )  # fmt: skip


def _run_point(exp: Experiment, point: Mapping[str, Any], seed: int | None) -> Result:
    if LATENCY_KEY not in point:
        return runner.run(exp, progress=False)
    from ratelab.server.local import LocalServer

    with LocalServer(latency=point[LATENCY_KEY], seed=seed) as server:
        return runner.run(exp.replace(target=server), progress=False)


_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """``"RateLimit(20) + ConnectionLimit(10)"`` -> ``"ratelimit-20-connectionlimit-10"``."""
    return _SLUG.sub("-", text.lower()).strip("-") or "run"
