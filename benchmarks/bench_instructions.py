"""Harness overhead in CPU instructions: a figure the machine's load cannot move.

    python benchmarks/bench_instructions.py [--smoke] [--out PATH] [--requests N]

Throughput ratios on a small shared machine spread by +-10% from run to run
(``bench_overhead.py``). This benchmark counts the instructions the *client* process
executes, with ``valgrind --tool=callgrind``, which is repeatable whatever else the machine
is doing. Each client runs twice, for ``N`` and ``3N`` requests, against the same target
server (``ratelab.server.local.serve`` in its own process, not under valgrind); the difference
divided by ``2N`` is the cost per request, with the start-up (imports, session setup,
building the Result) cancelled out:

* bare: bench_overhead's hand-written loop (50 tasks, ``asyncio.Queue``, ``TCPConnector``
  with ``limit=0``, ``session.get`` + ``read()``, no recording);
* ratelab ``Unlimited()`` and ``ConnectionLimit(50)``: ``rl.run(..., workers=50)`` with full
  recording.

The figure is bare instructions / ratelab instructions per request: the share of a
client-bound ceiling ratelab keeps (target >= 0.90). Needs ``valgrind`` (Debian package);
without it the report says ``"skipped"``. ``--smoke`` only checks that valgrind runs and
its count is read (a run of the clients under valgrind takes ~40 s each).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import default_out, headline, machine_info, parser, server_process, write_report

HERE = Path(__file__).resolve().parent
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")

#: The client processes measured (each one runs one client once, then exits).
CLIENT = """
import asyncio, sys
sys.path.insert(0, {here!r})
kind, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
import ratelab as rl  # imported by every client, so the start-up costs are alike
if kind == "bare":
    from bench_overhead import _bare
    ok, errors = asyncio.run(_bare(url + "/get", n, 50, 0))
else:
    strategy = rl.Unlimited() if kind == "unlimited" else rl.ConnectionLimit(50)
    exp = rl.Experiment(target=url, requests=n, workers=50, strategy=strategy, seed=0)
    df = rl.run(exp, progress=False).df
    ok = int((df["status"] == 200).sum())
print("ok", ok)
"""

KINDS = ("bare", "unlimited", "connection_limit_50")


def count_instructions(argv: list[str]) -> tuple[int, str]:
    """Instructions executed by ``argv`` under callgrind, and the program's stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={Path(tmp) / 'callgrind.out'}",
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    m = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"valgrind {argv[:2]} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return int(m.group(1)), proc.stdout


def run(n: int) -> dict[str, Any]:
    client = CLIENT.format(here=str(HERE))
    jobs = [(kind, size) for kind in KINDS for size in (n, 3 * n)]
    counts: dict[tuple[str, int], int] = {}
    with server_process("ratelab") as url:

        def one(job: tuple[str, int]) -> None:
            kind, size = job
            instructions, out = count_instructions(
                [sys.executable, "-c", client, kind, url, str(size)]
            )
            if f"ok {size}" not in out:
                raise RuntimeError(f"{kind} client: not every request succeeded: {out!r}")
            counts[job] = instructions

        with ThreadPoolExecutor(max_workers=2) as pool:  # counts do not depend on load
            list(pool.map(one, jobs))
    per_request = {kind: (counts[(kind, 3 * n)] - counts[(kind, n)]) / (2 * n) for kind in KINDS}
    bare = per_request["bare"]
    report: dict[str, Any] = {
        "benchmark": "instructions",
        "requests": [n, 3 * n],
        "workers": 50,
        "server": "ratelab",
        "instructions": {f"{k}@{s}": v for (k, s), v in counts.items()},
        "instructions_per_request": per_request,
        "ratio_unlimited": bare / per_request["unlimited"],
        "ratio_connection_limit_50": bare / per_request["connection_limit_50"],
        "overhead_per_request": {
            k: per_request[k] - bare for k in ("unlimited", "connection_limit_50")
        },
    }
    report["headline"] = [
        headline(
            "instructions/request: bare / Unlimited()",
            round(report["ratio_unlimited"], 3),
            ">= 0.90",
        ),
        headline(
            "instructions/request: bare / ConnectionLimit(50)",
            round(report["ratio_connection_limit_50"], 3),
            ">= 0.90",
        ),
        headline(
            "instructions/request: bare; Unlimited(); ConnectionLimit(50)",
            "; ".join(f"{per_request[k]:,.0f}" for k in KINDS),
        ),
    ]
    return report


def smoke() -> dict[str, Any]:
    """Valgrind runs and its count is read: a tiny program, counted twice."""
    argv = [sys.executable, "-S", "-c", "sum(range(100000))"]
    a, _ = count_instructions(argv)
    b, _ = count_instructions(argv)
    return {
        "benchmark": "instructions",
        "smoke_instructions": [a, b],
        "headline": [headline("callgrind runs (smoke: tiny program, counted twice)", f"{a}; {b}")],
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=2000, help="N (the clients run N and 3N)")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        report: dict[str, Any] = {
            "benchmark": "instructions",
            "skipped": "valgrind not installed (apt-get install -y valgrind)",
            "headline": [headline("instructions/request", "skipped: valgrind not installed")],
        }
    elif args.smoke:
        report = smoke()
    else:
        report = run(args.requests)
    report["smoke"] = args.smoke
    report["machine"] = machine_info()
    report["machine"]["valgrind"] = (
        subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
        if shutil.which("valgrind")
        else None
    )
    for row in report["headline"]:
        print(f"{row['metric']:<62} {row['value']}")
    write_report(report, default_out("instructions", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
