"""Shared helpers for the benchmarks: machine info, JSON output, stats, target servers, wrk.

Every benchmark measures *ratios* side by side in one run (absolute times drift by 10-25%
on a small shared machine), saves raw samples + derived stats + :func:`machine_info`, and
takes ``--smoke`` (tiny sizes, seconds) and ``--out PATH``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PACKAGES = ("ratelab", "aiohttp", "aiolimiter", "multidict", "yarl", "numpy", "pandas")
_URL = re.compile(r"http://127\.0\.0\.1:\d+")


def machine_info() -> dict[str, Any]:
    """The keys of bench_analysis.machine_info, plus package versions, date and load."""
    packages = {}
    for pkg in PACKAGES:
        try:
            packages[pkg] = version(pkg)
        except PackageNotFoundError:
            packages[pkg] = None
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": packages["numpy"],
        "pandas": packages["pandas"],
        "packages": packages,
        "cpu_count": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):  # other work on the machine skews absolute figures
        info["loadavg_1_5_15m"] = [round(x, 2) for x in os.getloadavg()]
    if shutil.which("wrk"):
        info["wrk"] = _first_line(["wrk", "--version"])
    return info


def _first_line(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return ((out.stdout or out.stderr).strip().splitlines() or ["unknown"])[0]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The common command line: ``--smoke`` and ``--out``."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks it runs, in seconds")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    return p


def default_out(name: str, args: argparse.Namespace) -> Path | None:
    """Where to write: ``--out``, else the committed results (never in smoke mode)."""
    if args.out is not None:
        return args.out
    return None if args.smoke else RESULTS / f"{name}.json"


def write_report(report: dict[str, Any], out: Path | None) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    print(f"saved {out}")


def describe(samples: Sequence[float]) -> dict[str, float]:
    """Median, mean, min, max and standard deviation of the samples."""
    xs = [float(x) for x in samples]
    return {
        "median": statistics.median(xs),
        "mean": statistics.fmean(xs),
        "min": min(xs),
        "max": max(xs),
        "stdev": statistics.stdev(xs) if len(xs) > 1 else 0.0,
    }


def finite(x: float) -> float | None:
    """``x`` for JSON, or None when it is NaN/inf."""
    return float(x) if math.isfinite(x) else None


def headline(metric: str, value: float | str | None, target: str = "") -> dict[str, Any]:
    """One row of run_all's table."""
    return {"metric": metric, "value": value, "target": target}


# ------------------------------------------------------------------ target servers

# Both servers exit when stdin closes, so a benchmark killed hard leaves no server behind.
_EXIT_ON_EOF = (
    "import os, sys, threading; "
    "threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start(); "
)
_RATELAB_SERVER = _EXIT_ON_EOF + "from ratelab.server.local import serve; serve(port=0{latency})"


@contextmanager
def server_process(kind: str = "ratelab", latency: float | None = None) -> Iterator[str]:
    """A target server in its own process on 127.0.0.1 (a free port); yields its base URL.

    ``kind="ratelab"``: ``ratelab.server.local.serve`` (the real LocalServer: middleware, request
    log, httpbin-style echo). ``kind="minimal"``: ``benchmarks/_minimal_server.py``, a bare
    aiohttp.web app whose ``/get`` returns a small fixed JSON.
    """
    if kind == "ratelab":
        lat = "" if latency is None else f", latency={latency!r}"
        cmd = [sys.executable, "-c", _RATELAB_SERVER.format(latency=lat)]
    elif kind == "minimal":
        script = Path(__file__).with_name("_minimal_server.py")
        cmd = [
            sys.executable,
            "-c",
            _EXIT_ON_EOF + f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')",
        ]
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = _URL.search(line)
        if m is None:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(f"{kind} server did not start: {line!r} {err[-2000:]}")
        _wait_listening(m.group(0))
        yield m.group(0)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        else:
            proc.communicate()


def _wait_listening(url: str, timeout: float = 10.0) -> None:
    import socket

    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ------------------------------------------------------------------ native load generators


def native_tool() -> str | None:
    """``wrk`` or ``hey`` if installed (the native-client ceiling), else None."""
    for tool in ("wrk", "hey"):
        if shutil.which(tool):
            return tool
    return None


def native_rate(url: str, *, connections: int, duration_s: float) -> dict[str, Any]:
    """Requests/s a native load generator gets from ``url`` (one thread, keep-alive)."""
    tool = native_tool()
    if tool is None:
        return {"skipped": "neither wrk nor hey is installed"}
    secs = max(1, round(duration_s))
    if tool == "wrk":
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{secs}s", url]
    else:
        cmd = ["hey", "-z", f"{secs}s", "-c", str(connections), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30, check=False)
    m = re.search(r"Requests/sec:\s*([\d.]+)", out.stdout)
    if out.returncode != 0 or m is None:
        return {"skipped": f"{tool} failed: {(out.stdout + out.stderr)[-500:]}"}
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out.stdout)
    return {
        "tool": tool,
        "command": " ".join(cmd),
        "rate_per_s": float(m.group(1)),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "raw": out.stdout,
    }
