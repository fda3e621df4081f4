"""Run every benchmark and print a compact table of the headline figures.

    python benchmarks/run_all.py            # full sizes (~6 min); JSON -> benchmarks/results/
    python benchmarks/run_all.py --smoke    # tiny sizes (seconds); JSON -> a temp dir
    python benchmarks/run_all.py --smoke --out DIR --only overhead,rate

Each benchmark runs in its own process (``benchmarks/bench_NAME.py --out DIR/NAME.json``,
plus ``--smoke``), so one cannot skew another's memory or event loop. Every ``bench_*.py``
in this directory runs: the known ones first, any other after them. Smoke mode never
writes to ``benchmarks/results/`` unless ``--out`` says so. Exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: name -> (extra args in smoke mode, extra args in full mode, timeout in s). Any other
#: ``bench_NAME.py`` found here runs too, after these, with ``--smoke`` / no extra args.
KNOWN: dict[str, tuple[list[str], list[str], float]] = {
    "overhead": (["--smoke"], [], 600),
    "rate": (["--smoke"], [], 300),
    "timing": (["--smoke"], [], 300),
    "memory": (["--smoke"], [], 600),
    "recipe": (["--smoke"], [], 300),
    "uvloop": (["--smoke"], [], 600),
    "httpx": (["--smoke"], [], 1800),
    "instructions": (["--smoke"], [], 1800),
    "analysis": (["--rows", "2000"], [], 600),
    "simulate": (["--smoke"], [], 600),
    "fidelity": (["--smoke"], [], 1800),
}
DEFAULT: tuple[list[str], list[str], float] = (["--smoke"], [], 600)


def discover() -> dict[str, tuple[list[str], list[str], float]]:
    """The known benchmarks in order, then every other ``bench_*.py`` alphabetically."""
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    out = {name: args for name, args in KNOWN.items() if name in found}
    out.update({name: DEFAULT for name in found if name not in out})
    return out


BENCHMARKS = discover()


def headline_rows(name: str, report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, target) rows for the table."""
    if "headline" in report:
        return [
            (str(r["metric"]), _fmt(r["value"]), str(r.get("target", "")))
            for r in report["headline"]
        ]
    if name == "analysis":  # bench_analysis.py predates the headline convention
        return [
            (f"analysis.{fn} / numpy kernel ({report['rows']:,} rows)", _fmt(r["ratio"]), "info")
            for fn, r in report["results"].items()
        ]
    return [("(no headline)", "", "")]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def run_one(name: str, out_dir: Path, smoke: bool, env: dict[str, str]) -> dict[str, Any]:
    smoke_args, full_args, timeout = BENCHMARKS[name]
    out = out_dir / f"{name}.json"
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *(smoke_args if smoke else full_args)]
    cmd += ["--out", str(out)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=HERE.parent, timeout=timeout, check=False,
            capture_output=smoke, text=True,
        )  # fmt: skip
        code, tail = proc.returncode, (proc.stdout or "")[-3000:] + (proc.stderr or "")[-3000:]
    except subprocess.TimeoutExpired as e:
        code, tail = -1, f"timed out after {timeout:g} s: {e}"
    elapsed = time.perf_counter() - t
    status: dict[str, Any] = {"name": name, "exit": code, "seconds": elapsed, "out": str(out)}
    if code != 0 or not out.exists():
        status["error"] = tail or f"exit {code}, no {out.name}"
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks everything runs")
    p.add_argument("--out", type=Path, default=None, help="directory for the NAME.json files")
    p.add_argument("--only", default=None, help="comma-separated subset, e.g. overhead,rate")
    args = p.parse_args(argv)
    names = list(BENCHMARKS) if not args.only else [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    if args.out is not None:
        out_dir = args.out
    elif args.smoke:
        out_dir = Path(tempfile.mkdtemp(prefix="ratelab-bench-smoke-"))
    else:
        out_dir = RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}

    t0 = time.perf_counter()
    statuses = []
    for name in names:
        print(f"== {name} {'(smoke)' if args.smoke else ''}", flush=True)
        st = run_one(name, out_dir, args.smoke, env)
        statuses.append(st)
        if "error" in st:
            print(f"!! {name} failed (exit {st['exit']}):\n{st['error']}", flush=True)
        else:
            print(f"   {name}: {st['seconds']:.1f} s -> {st['out']}", flush=True)

    print(f"\n{'benchmark':<10} {'metric':<52} {'value':>12}  target")
    for st in statuses:
        if "error" in st:
            print(f"{st['name']:<10} {'FAILED':<52}")
            continue
        report = json.loads(Path(st["out"]).read_text())
        for metric, value, target in headline_rows(st["name"], report):
            print(f"{st['name']:<10} {metric:<52} {value:>12}  {target}")
    total = time.perf_counter() - t0
    print(f"\n{len(statuses)} benchmarks in {total:.0f} s; results in {out_dir}")
    return 1 if any("error" in st for st in statuses) else 0


if __name__ == "__main__":
    raise SystemExit(main())
