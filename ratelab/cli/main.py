"""The ``ratelab`` command line.

    ratelab demo [--out data/demo] [--requests 100]     the recipe and each single strategy
    ratelab run EXPERIMENT.toml [--out data/NAME.parquet] [--no-progress] [--live] [--simulate]
    ratelab plot RUN.parquet [-o FIG.png]               one run's dashboard
    ratelab compare A.parquet B.parquet ... [-o FIG.png]
    ratelab summary RUN.parquet ...                     a table on stdout
    ratelab sweep SWEEP.toml [-o summary.csv] [--plot FIG.png] [--simulate]
    ratelab recommend --server URL (--rate-limit 30/2s | --profile openai:rpm=600,tpm=30000)
                  [--workers 10] [--requests 100] [--library aiohttp|httpx|aiometer] [--simulate]
    ratelab probe URL [--budget N] [--no-polite]        a server's limit, window, algorithm
    ratelab serve [--host 127.0.0.1] [--port 8080] [--latency uniform:0.05,0.2] [--seed N]
                  [--rate-limit 20/1s ...] [--headers ietf|ietf-06|openai|anthropic|github|none]
                  [--allow-remote]                 needed for a host beyond this machine

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
table (``x``, ``y``, ``hue``: summary columns). ``--simulate`` runs on a virtual clock
(``rl.simulate``): the ``[server]`` table is the simulated server's model and no server is
started. A bad value prints ``error: ...`` on stderr
and exits with status 2.

This module is the parser and :func:`main`; the commands are in :mod:`ratelab.cli.commands`
(the demo's work in :mod:`ratelab.cli.demo`), file reading in :mod:`ratelab.cli.toml_files`,
tables in :mod:`ratelab.cli.tables`, figure files in :mod:`ratelab.cli.figures` and the exit
statuses in :mod:`ratelab.cli.status`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ratelab.cli.commands import (
    cmd_compare,
    cmd_demo,
    cmd_plot,
    cmd_probe,
    cmd_recommend,
    cmd_run,
    cmd_serve,
    cmd_summary,
    cmd_sweep,
)
from ratelab.cli.status import EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from ratelab.errors import ConfigError, RatelabError
from ratelab.experiment.loop_option import LOOPS

__all__ = ["build_parser", "main"]


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
        "--live",
        action="store_true",
        help="show the headline numbers (rate now, in flight, waits, statuses, limiter state) "
        "refreshed in place; the progress bar where output is not a terminal",
    )
    sp.add_argument(
        "--loop",
        choices=LOOPS,
        default=None,
        help="event loop (default: the file's `loop`, else asyncio); uvloop needs ratelab[uvloop]",
    )
    sp.add_argument(
        "--simulate",
        action="store_true",
        help="run on a virtual clock against a simulated [server] (none is started)",
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
    sp.add_argument(
        "--simulate",
        action="store_true",
        help="run on a virtual clock against a simulated [server] (none is started)",
    )

    sp = add("serve", cmd_serve, "run the local test server in the foreground")
    sp.add_argument(
        "--host", default="127.0.0.1", help="127.0.0.1 (default) keeps it on this machine"
    )
    sp.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other machines can reach (e.g. 0.0.0.0); off by default",
    )
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--latency", default=None, help="e.g. uniform:0.05,0.2 or fixed:0.1")
    sp.add_argument("--seed", type=int, default=None)
    sp.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="N[ UNIT]/WINDOW[:ALGORITHM]",
        help="server-side limit, e.g. 20/1s, 20/1s:sliding_window, '30000 tokens/1m' or"
        " '100 concurrent' (repeatable: checked together)",
    )
    sp.add_argument(
        "--headers",
        default="ietf",
        choices=["ietf", "ietf-06", "openai", "anthropic", "github", "none"],
        help="the rate-limit header style of the answers (default: ietf)",
    )
    sp.add_argument("--max-concurrency", type=int, default=None, help="more in flight gets 503")

    # ratelab recommend (issue 18)
    sp = add("recommend", cmd_recommend, "which client numbers to use against a server's limit")
    sp.add_argument("--server", required=True, help="the server's URL (the workload's target)")
    sp.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="N[ UNIT]/WINDOW[:ALGORITHM]",
        help="the server's limit, as for `ratelab serve` (repeatable)",
    )
    sp.add_argument("--profile", help="a vendor's shape instead: e.g. openai:rpm=600,tpm=30000")
    sp.add_argument("--workers", type=int, default=10, help="workers (default 10)")
    sp.add_argument("--requests", type=int, default=100, help="requests (default 100)")
    sp.add_argument("--endpoint", default="/get", help="the path requested (default /get)")
    sp.add_argument("--cost", type=float, default=None, help="tokens each request costs")
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--max-429-rate", type=float, default=0.0, help="share refused allowed")
    sp.add_argument(
        "--library", default="aiohttp", choices=["aiohttp", "httpx", "aiometer"],
        help="the snippet's library (default aiohttp)",
    )  # fmt: skip
    sp.add_argument(
        "--simulate", action="store_true", help="only search (virtual time); send nothing"
    )
    sp.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_probe(add)
    return p


def _add_probe(add: Callable[..., Any]) -> None:
    """``ratelab probe URL [--budget N] [--no-polite]``."""
    sp = add("probe", cmd_probe, "find a server's rate limit with a few requests")
    sp.add_argument("url", help="the URL to probe, e.g. http://127.0.0.1:8080/get")
    sp.add_argument(
        "--budget",
        type=int,
        default=None,
        help="the most requests to send (default: about three windows' worth, at most 1000;"
        " 100 to a host that is not this machine)",
    )
    sp.add_argument(
        "--no-polite",
        action="store_true",
        help="to a host that is not this machine: allow more than 100 requests (5/s pacing off)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as e:
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
