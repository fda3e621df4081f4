"""The ``ratelab`` commands: one ``cmd_*`` function per subcommand.

Each takes the parsed arguments and returns the exit status (see :mod:`ratelab.cli.status`);
bad input raises :class:`~ratelab.cli.status.UsageError` or a
:class:`~ratelab.errors.RatelabError`, which :func:`ratelab.cli.main.main` reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratelab.cli.demo import run_demo
from ratelab.cli.figures import save_figure, use_agg
from ratelab.cli.status import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from ratelab.cli.tables import format_table, runs_table
from ratelab.cli.toml_files import check_tables, experiment_from_toml, read_toml
from ratelab.errors import ConfigError

if TYPE_CHECKING:
    from ratelab.analysis.result import Result

__all__ = [
    "SWEEP_COLUMNS",
    "cmd_compare",
    "cmd_demo",
    "cmd_plot",
    "cmd_probe",
    "cmd_recommend",
    "cmd_run",
    "cmd_serve",
    "cmd_summary",
    "cmd_sweep",
]


def _load_all(paths: Sequence[str]) -> list[Result]:
    from ratelab.analysis.result import load

    return [load(p) for p in paths]


def cmd_demo(args: argparse.Namespace) -> int:
    """The recipe and each single strategy on one embedded server; tables, files, figure."""
    return run_demo(
        out_dir=args.out,
        requests=args.requests,
        workers=args.workers,
        load_workers=args.load_workers,
        progress=not args.no_progress,
    )


def _simulated_note(local: object) -> str:
    model = "its [server] table" if local is not None else "a server with no latency or limits"
    return f"simulated: a virtual clock against {model} (no server was started)"


def cmd_run(args: argparse.Namespace) -> int:
    from ratelab.client.runner import run

    path = Path(args.experiment)
    data = read_toml(path)
    server = data.pop("server", None)
    simulate = getattr(args, "simulate", False)
    live = bool(getattr(args, "live", False))  # virtual time shown at real speed
    try:
        exp, local = experiment_from_toml(data, server, simulate=simulate)
    except OSError as e:  # the [server] table's port is taken, or not ours to bind
        print(f"error: {path}: [server]: {e}", file=sys.stderr)
        return EXIT_FAILED
    if simulate:
        from ratelab.simulation.runner import simulate as _simulate

        if args.loop not in (None, "asyncio"):
            raise ConfigError("--loop", args.loop, "a simulation runs on asyncio: leave it out")
        result = _simulate(exp, local, progress=not args.no_progress, live=live)
    else:
        try:
            result = run(exp, progress=not args.no_progress, loop=args.loop, live=live)
        finally:
            if local is not None:  # the embedded server, started when the Experiment took it
                local.stop()
    out = Path(args.out) if args.out else Path("data") / f"{path.stem}.parquet"
    result.save(out)
    print(runs_table([result]))
    if simulate:
        print(_simulated_note(local))
    print(f"saved: {out}")
    if result.interrupted:
        print("interrupted: the partial result was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    use_agg()
    from ratelab.analysis.plots import dashboard

    (result,) = _load_all([args.run])
    out = Path(args.output) if args.output else Path(args.run).with_suffix(".png")
    print(f"figure: {save_figure(dashboard(result), out)}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    use_agg()
    from ratelab.analysis.plots import compare

    results = _load_all(args.runs)
    print(f"figure: {save_figure(compare(results), Path(args.output))}")
    return EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    print(runs_table(_load_all(args.runs)))
    return EXIT_OK


#: The summary columns ``ratelab sweep`` prints after the grid's columns.
SWEEP_COLUMNS = (
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
    data = read_toml(path)
    check_tables(data, ["experiment", "server", "grid", "plot"])
    if "grid" not in data or not isinstance(data["grid"], Mapping):
        raise ConfigError("grid", data.get("grid"), "a sweep file needs a [grid] table of lists")
    simulate = getattr(args, "simulate", False)
    try:
        exp, local = experiment_from_toml(
            data.get("experiment", {}), data.get("server"), simulate=simulate
        )
    except OSError as e:  # the [server] table's port is taken, or not ours to bind
        print(f"error: {path}: [server]: {e}", file=sys.stderr)
        return EXIT_FAILED
    grid = dict(data["grid"])
    plot_opts = data.get("plot", {})
    if not isinstance(plot_opts, Mapping) or set(plot_opts) - {"x", "y", "hue"}:
        raise ConfigError("plot", plot_opts, "must be a table with keys x, y, hue")

    if simulate:
        sw = sweep(exp, progress=not args.no_progress, simulate=True, server=local, **grid)
    elif local is not None and LATENCY_KEY not in grid:
        with local:  # one embedded server for every point (a latency grid starts its own)
            sw = sweep(exp, progress=not args.no_progress, **grid)
    else:
        sw = sweep(exp, progress=not args.no_progress, **grid)
    shown = [c for c in (*_grid_columns(grid), *SWEEP_COLUMNS) if c in sw.summary.columns]
    print(format_table(shown, sw.summary[shown].itertuples(index=False)))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        sw.summary.to_csv(out)
        print(f"summary: {out}")
    if args.plot and len(sw.results):
        use_agg()
        keys = list(grid)
        x = plot_opts.get("x") or ("latency_s" if LATENCY_KEY in grid else keys[0])
        others = [k for k in keys if k != (LATENCY_KEY if x == "latency_s" else x)]
        hue = plot_opts.get("hue") or (others[0] if others else None)
        ax = plot_sweep(sw.summary, x=x, y=plot_opts.get("y", "steady_rate_per_s"), hue=hue)
        print(f"figure: {save_figure(ax.figure, Path(args.plot))}")
    if simulate:
        print(_simulated_note(local))
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
    from ratelab.experiment.experiment import is_loopback_host
    from ratelab.server.local import serve

    if not is_loopback_host(args.host) and not args.allow_remote:
        raise UsageError(
            f"--host {args.host} would listen beyond this machine: use 127.0.0.1,"
            " or add --allow-remote to mean it"
        )
    try:
        serve(
            host=args.host,
            port=args.port,
            latency=args.latency,
            seed=args.seed,
            rate_limit=args.rate_limit or None,
            max_concurrency=args.max_concurrency,
            headers=None if args.headers == "none" else args.headers,
        )
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# -- ratelab recommend (issue 18) ---------------------------------------------------------


def _profile(spec: str) -> Any:
    """``openai:rpm=600,tpm=30000`` → ``rl.profiles.openai(rpm=600, tpm=30000)``."""
    from ratelab.server import profiles

    name, _, args = spec.partition(":")
    func = {"openai": profiles.openai, "anthropic": profiles.anthropic,
            "github": profiles.github}.get(name)  # fmt: skip
    if func is None:
        raise UsageError(f"--profile {spec}: the name must be openai, anthropic or github")
    kwargs: dict[str, Any] = {}
    for item in filter(None, args.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--profile {spec}: write its arguments as name=value,name=value")
        try:
            kwargs[key.strip()] = int(value)
        except ValueError:
            kwargs[key.strip()] = value.strip()
    try:
        return func(**kwargs)
    except TypeError as e:
        raise UsageError(f"--profile {spec}: {e}") from None


def cmd_recommend(args: argparse.Namespace) -> int:
    """Recommend client numbers for a server's limit; print the table and the snippet, and
    (without --simulate) run the recommendation against the server and say what it got."""
    from ratelab.advice.recommend import recommend, steady_throughput_per_s
    from ratelab.experiment.experiment import Experiment
    from ratelab.server.policies import as_rate_limits

    if args.rate_limit and args.profile:
        raise UsageError("give --rate-limit or --profile, not both")
    if args.profile:
        server: Any = _profile(args.profile)
    elif args.rate_limit:
        server = list(as_rate_limits(args.rate_limit, parameter="--rate-limit"))
    else:
        try:
            from ratelab.advice.probe import probe  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise UsageError(
                "say the server's limit with --rate-limit N/WINDOW[:ALGORITHM] or --profile "
                "NAME:ARGS (this ratelab has no probe to find it out)"
            ) from None
        server = probe(args.server.rstrip("/") + args.endpoint)
    workload = Experiment(
        target=args.server, endpoints=args.endpoint, requests=args.requests,
        workers=args.workers, cost=args.cost, seed=args.seed,
    )  # fmt: skip
    rec = recommend(server, workload, max_429_rate=args.max_429_rate)
    print(format_table(("shape", "strategy", "throughput/s", "429", "p99 wait s"), rec.table()))
    print()
    print(rec.why)
    print()
    print(f"# {args.library}:")
    print(rec.to_snippet(args.library))
    if args.simulate:
        print(f"simulated ({rec.simulations} simulations, {rec.search_s:.1f} s); nothing was sent")
        return EXIT_OK
    from ratelab.client.runner import run

    result = run(rec.experiment, progress=not args.no_progress)
    df = result.df
    refused = int((df["status"] == 429).sum())
    print(
        f"run for real: {len(df)} attempts, {refused} refused (429), "
        f"{steady_throughput_per_s(result):.2f}/s over the steady part "
        f"(limit {rec.limit_per_s:.3g}/s)"
    )
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    """``ratelab probe URL``: what the probe found, as a table, and what it cost."""
    from ratelab.advice.probe import probe

    p = probe(args.url, budget=args.budget, polite=not args.no_polite)
    print(f"probe of {p.url}: {p.requests} requests over {p.duration_s:.3g} s, from the {p.source}")
    rows = p.rows()
    print(format_table(["finding", "value", "confidence"], [r[:3] for r in rows]))
    print()
    for name, _, _, evidence in rows:
        print(f"{name}: {evidence}")
    for lim in p.rate_limits:
        print(f"as a server model: {lim!r}")
    return EXIT_OK
