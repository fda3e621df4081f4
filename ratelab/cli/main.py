"""The ``ratelab`` command line.

    ratelab demo [--out data/demo] [--requests 100]     the recipe and each single strategy
    ratelab run EXPERIMENT.toml [--out data/NAME.parquet] [--no-progress]
    ratelab plot RUN.parquet [-o FIG.png]               one run's dashboard
    ratelab compare A.parquet B.parquet ... [-o FIG.png]
    ratelab summary RUN.parquet ...                     a table on stdout
    ratelab sweep SWEEP.toml [-o summary.csv] [--plot FIG.png]
    ratelab serve [--host 127.0.0.1] [--port 8080] [--latency uniform:0.05,0.2] [--seed N]

An experiment file uses the names of :class:`~ratelab.experiment.experiment.Experiment`::

    requests = 100
    workers = 10
    think_time = "uniform:0.05,1.0"              # or {type = "uniform", low_s = 0.05, high_s = 1.0}
    strategy = [{type = "RateLimit", max_rate = 20}, {type = "ConnectionLimit", limit = 10}]
    seed = 1

    [server]                                     # an embedded LocalServer is the target
    latency = "uniform:0.05,0.2"
    seed = 1

A sweep file has an ``[experiment]`` table (same names), an optional ``[server]`` table, a
``[grid]`` table of lists (Experiment names, or ``latency``) and an optional ``[plot]``
table (``x``, ``y``, ``hue``: summary columns). A bad value prints ``error: ...`` on stderr
and exits with status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratelab.errors import ConfigError, RatelabError
from ratelab.experiment.loop_option import LOOPS

if TYPE_CHECKING:
    from ratelab.analysis.result import Result
    from ratelab.server.local import LocalServer

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran but something outside ratelab failed (e.g. a busy port)
EXIT_USAGE = 2  # bad arguments, files or configuration values
EXIT_INTERRUPTED = 130

_SERVER_KEYS = (
    "latency", "seed", "host", "port", "rate_limit", "max_concurrency", "overload_status",
    "faults",
)  # fmt: skip
_DPI = 100


class _UsageError(Exception):
    """A problem with the command's input, reported as ``error: ...`` with status 2."""


# --------------------------------------------------------------------------- tables


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) < 5e-4:
            return "0"
        return f"{value:.{digits}g}"
    return str(value)


def _fixed(value: float, decimals: int = 1) -> str:
    """A number with fixed decimals (so a column lines up), ``-`` when undefined."""
    x = float(value)
    return f"{x:,.{decimals}f}" if math.isfinite(x) else "-"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


_RUN_HEADERS = (
    "run",
    "requests",
    "rate/s",
    "steady/s",
    "peak in flight",
    "p50 ms",
    "p95 ms",
    "limiter wait ms",
    "pool wait ms",
    "errors",
)


def runs_table(results: Sequence[Result]) -> str:
    """One row per run: requests, achieved and steady rate, peak in flight, p50/p95
    latency, mean limiter and pool wait, errors."""
    import numpy as np

    from ratelab.analysis.metrics import summary

    table = summary(list(results))
    rows = []
    for res, (_, s) in zip(results, table.iterrows(), strict=True):
        lat = res.latency() * 1e3
        p50, p95 = np.quantile(lat, [0.5, 0.95]).tolist() if lat.size else (math.nan, math.nan)
        label = res.label + (" (interrupted)" if res.interrupted else "")
        rows.append(
            (
                label,
                int(s["requests"]),
                _fixed(s["rate_per_s"]),
                _fixed(s["steady_rate_per_s"]),
                int(s["peak_in_flight"]),
                _fixed(p50),
                _fixed(p95),
                _fixed(s["limiter_wait_mean_s"] * 1e3),
                _fixed(s["pool_wait_mean_s"] * 1e3),
                int(s["errors"]),
            )
        )
    return format_table(_RUN_HEADERS, rows)


# --------------------------------------------------------------------------- files


def _read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise _UsageError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise _UsageError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise _UsageError(f"{path}: cannot read: {e.strerror or e}") from None


def _server_from(table: object) -> LocalServer:
    from ratelab.server.local import LocalServer

    if not isinstance(table, Mapping):
        raise ConfigError("server", table, f"must be a table with keys {list(_SERVER_KEYS)}")
    for key in table:
        if key not in _SERVER_KEYS:
            raise ConfigError(
                f"server.{key}", table[key], f"is not a server option; valid: {list(_SERVER_KEYS)}"
            )
    return LocalServer(**dict(table))


def experiment_from_toml(
    fields: Mapping[str, Any], server: object = None
) -> tuple[Any, LocalServer | None]:
    """Build an Experiment from a TOML table; a ``[server]`` table becomes its target."""
    import dataclasses

    from ratelab.experiment.experiment import Experiment

    if not isinstance(fields, Mapping):
        raise ConfigError("experiment", fields, "must be a table of Experiment fields")
    data = dict(fields)
    known = sorted(f.name for f in dataclasses.fields(Experiment))
    for key in data:
        if key not in known:
            hint = "The server's latency goes in a [server] table" if key == "latency" else ""
            raise ConfigError(key, data[key], f"is not a field; valid: {known}", hint)
    local = None
    if server is not None:
        if "target" in data:
            raise ConfigError(
                "target",
                data["target"],
                "leave it out when a [server] table starts an embedded server",
            )
        local = _server_from(server)
        data["target"] = local
    elif "target" not in data:
        raise ConfigError(
            "target",
            None,
            "is required: a URL such as http://127.0.0.1:8080, "
            "or a [server] table for an embedded LocalServer",
        )
    return Experiment.from_dict(data), local


def _check_tables(data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(key, data[key], f"is not a table of a sweep file; valid: {allowed}")


def _save_figure(fig: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=_DPI)
    finally:
        plt.close(fig)
    return out


def _agg() -> None:
    """Draw off-screen (a CLI process has no window to show)."""
    import matplotlib

    matplotlib.use("Agg")


def _load_all(paths: Sequence[str]) -> list[Result]:
    from ratelab.analysis.result import load

    return [load(p) for p in paths]


# --------------------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> int:
    """The recipe and each single strategy on one embedded server; tables, files, figure."""
    _agg()
    from ratelab.analysis import plots
    from ratelab.client.runner import run
    from ratelab.client.sweep import slug
    from ratelab.experiment.distributions import Uniform
    from ratelab.experiment.experiment import Experiment
    from ratelab.experiment.strategies import Concurrency, ConnectionLimit, RateLimit, Unlimited
    from ratelab.server.local import LocalServer

    out = Path(args.out)
    recipe = RateLimit(20) + ConnectionLimit(10)
    # the recipe as written, then every strategy under load (more workers, no think time),
    # so that each one's bound shows
    plan = [(recipe, args.workers)] + [
        (s, args.load_workers)
        for s in (recipe, RateLimit(20), ConnectionLimit(10), Concurrency(10), Unlimited())
    ]
    t0 = time.perf_counter()
    results: list[Result] = []
    saved: list[Path] = []
    latency = Uniform(0.05, 0.2)
    print(
        f"ratelab demo: {args.requests} requests per run, server latency {latency!r}, seed 1",
        flush=True,
    )
    with LocalServer(latency=latency, seed=1) as server:
        for i, (strategy, workers) in enumerate(plan, 1):
            exp = Experiment(
                target=server,
                requests=args.requests,
                workers=workers,
                think_time=Uniform(0.05, 1.0) if i == 1 else None,
                strategy=strategy,
                seed=1,
                name=f"{strategy!r} [{workers} workers]",
            )
            result = run(exp, progress=not args.no_progress)
            results.append(result)
            saved.append(result.save(out / f"{i:02d}-{slug(result.label)}.parquet"))
            if result.interrupted:
                break
    print()
    print(f"The recipe ({args.workers} workers, think time Uniform(0.05, 1.0)):")
    print(runs_table(results[:1]))
    print(
        f"  {args.workers} workers x ~0.65 s per request (think + server) offer about "
        f"{args.workers / 0.65:.0f} requests/s: below 20/s and never more than {args.workers} "
        "in flight, so here neither bound binds."
    )
    loaded = results[1:]
    if loaded:
        print()
        print(f"Each strategy under load ({args.load_workers} workers, no think time):")
        print(runs_table(loaded))
    print()
    figure = _save_figure(plots.compare(loaded or results), out / "compare.png")
    print(f"saved {len(saved)} runs to {out}/:")
    for p in saved:
        print(f"  {p}")
    print(f"figure: {figure}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return EXIT_INTERRUPTED if results and results[-1].interrupted else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from ratelab.client.runner import run

    path = Path(args.experiment)
    data = _read_toml(path)
    server = data.pop("server", None)
    exp, _ = experiment_from_toml(data, server)
    result = run(exp, progress=not args.no_progress, loop=args.loop)
    out = Path(args.out) if args.out else Path("data") / f"{path.stem}.parquet"
    result.save(out)
    print(runs_table([result]))
    print(f"saved: {out}")
    if result.interrupted:
        print("interrupted: the partial result was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    _agg()
    from ratelab.analysis.plots import dashboard

    (result,) = _load_all([args.run])
    out = Path(args.output) if args.output else Path(args.run).with_suffix(".png")
    print(f"figure: {_save_figure(dashboard(result), out)}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    _agg()
    from ratelab.analysis.plots import compare

    results = _load_all(args.runs)
    print(f"figure: {_save_figure(compare(results), Path(args.output))}")
    return EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    print(runs_table(_load_all(args.runs)))
    return EXIT_OK


_SWEEP_COLUMNS = (
    "requests",
    "rate_per_s",
    "steady_rate_per_s",
    "peak_in_flight",
    "latency_p50_s",
    "limiter_wait_mean_s",
    "pool_wait_mean_s",
    "errors",
)


def cmd_sweep(args: argparse.Namespace) -> int:
    from ratelab.analysis.sweeps import plot_sweep
    from ratelab.client.sweep import LATENCY_KEY, sweep

    path = Path(args.sweep)
    data = _read_toml(path)
    _check_tables(data, ["experiment", "server", "grid", "plot"])
    if "grid" not in data or not isinstance(data["grid"], Mapping):
        raise ConfigError("grid", data.get("grid"), "a sweep file needs a [grid] table of lists")
    exp, local = experiment_from_toml(data.get("experiment", {}), data.get("server"))
    grid = dict(data["grid"])
    plot_opts = data.get("plot", {})
    if not isinstance(plot_opts, Mapping) or set(plot_opts) - {"x", "y", "hue"}:
        raise ConfigError("plot", plot_opts, "must be a table with keys x, y, hue")

    if local is not None and LATENCY_KEY not in grid:
        with local:  # one embedded server for every point (a latency grid starts its own)
            sw = sweep(exp, progress=not args.no_progress, **grid)
    else:
        sw = sweep(exp, progress=not args.no_progress, **grid)
    shown = [c for c in (*_grid_columns(grid), *_SWEEP_COLUMNS) if c in sw.summary.columns]
    print(format_table(shown, sw.summary[shown].itertuples(index=False)))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        sw.summary.to_csv(out)
        print(f"summary: {out}")
    if args.plot and len(sw.results):
        _agg()
        keys = list(grid)
        x = plot_opts.get("x") or ("latency_s" if LATENCY_KEY in grid else keys[0])
        others = [k for k in keys if k != (LATENCY_KEY if x == "latency_s" else x)]
        hue = plot_opts.get("hue") or (others[0] if others else None)
        ax = plot_sweep(sw.summary, x=x, y=plot_opts.get("y", "steady_rate_per_s"), hue=hue)
        print(f"figure: {_save_figure(ax.figure, Path(args.plot))}")
    if sw.interrupted:
        print(f"interrupted after {len(sw.results)} points", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def _grid_columns(grid: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key in grid:
        out += ["latency_s", "latency"] if key == "latency" else [key]
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    from ratelab.server.local import serve

    try:
        serve(
            host=args.host,
            port=args.port,
            latency=args.latency,
            seed=args.seed,
            rate_limit=args.rate_limit or None,
            max_concurrency=args.max_concurrency,
        )
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from ratelab import __version__

    p = argparse.ArgumentParser(
        prog="ratelab",
        description="See how async HTTP rate limiting really behaves.",
    )
    p.add_argument("--version", action="version", version=f"ratelab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    sp = add("demo", cmd_demo, "run the recipe and each single strategy on a local server")
    sp.add_argument("--out", default="data/demo", help="directory for results and compare.png")
    sp.add_argument("--requests", type=int, default=100, help="requests per run (default 100)")
    sp.add_argument(
        "--workers", type=int, default=10, help="workers of the recipe run (default 10)"
    )
    sp.add_argument(
        "--load-workers",
        type=int,
        default=50,
        help="workers of the runs under load, one per strategy (default 50)",
    )
    sp.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    sp = add("run", cmd_run, "run the experiment described by a TOML file")
    sp.add_argument("experiment", help="EXPERIMENT.toml")
    sp.add_argument("--out", help="Parquet file to write (default data/<file stem>.parquet)")
    sp.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sp.add_argument(
        "--loop",
        choices=LOOPS,
        default=None,
        help="event loop (default: the file's `loop`, else asyncio); uvloop needs ratelab[uvloop]",
    )

    sp = add("plot", cmd_plot, "draw one saved run's dashboard")
    sp.add_argument("run", help="RUN.parquet")
    sp.add_argument("-o", "--output", help="figure file (default RUN.png)")

    sp = add("compare", cmd_compare, "draw several saved runs side by side")
    sp.add_argument("runs", nargs="+", help="RUN.parquet files")
    sp.add_argument("-o", "--output", default="compare.png", help="figure file")

    sp = add("summary", cmd_summary, "print a table of saved runs")
    sp.add_argument("runs", nargs="+", help="RUN.parquet files")

    sp = add("sweep", cmd_sweep, "run a parameter sweep described by a TOML file")
    sp.add_argument("sweep", help="SWEEP.toml")
    sp.add_argument("-o", "--output", help="write the summary as CSV")
    sp.add_argument("--plot", help="draw the sweep (x, y, hue from its [plot] table)")
    sp.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sp = add("serve", cmd_serve, "run the local test server in the foreground")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--latency", default=None, help="e.g. uniform:0.05,0.2 or fixed:0.1")
    sp.add_argument("--seed", type=int, default=None)
    sp.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="N/WINDOW[:ALGORITHM]",
        help="server-side limit, e.g. 20/1s or 20/1s:sliding_window (repeatable)",
    )
    sp.add_argument("--max-concurrency", type=int, default=None, help="more in flight gets 503")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except _UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RatelabError as e:  # ConfigError, ResultFileError: the message says it all
        source = getattr(args, "experiment", None) or getattr(args, "sweep", None)
        prefix = f"{source}: " if source and isinstance(e, ConfigError) else ""
        print(f"error: {prefix}{e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
