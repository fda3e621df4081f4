"""Memory: peak RSS of a 100,000-request run, as bytes per request.

    python benchmarks/bench_memory.py [--smoke] [--out PATH] [--requests N]

Each measurement runs in a fresh subprocess (this script with ``--child``) against the
ratelab server in another process. The child imports ratelab, does a 200-request warm-up
run (so imports, the connector and one-time allocations are paid), reads
``resource.getrusage(RUSAGE_SELF).ru_maxrss``, runs ``N`` requests, and reads it again:

    bytes per request = (peak after - peak before) / N

for ``rl.run(Experiment(strategy=Unlimited(), workers=50))`` (full recording, the Result's
DataFrame built and held) and, side by side, for the bare aiohttp worker-queue loop of
bench_overhead (no recording): the difference is what recording costs. Also reported: the
Result frame's own size (``df.memory_usage(deep=True)``) per row.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import default_out, headline, machine_info, parser, server_process, write_report

WORKERS = 50
WARMUP = 200


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child(kind: str, url: str, n: int) -> dict[str, Any]:
    from bench_overhead import _bare

    import ratelab as rl

    def once(count: int) -> Any:
        if kind == "ratelab":
            exp = rl.Experiment(target=url, requests=count, workers=WORKERS, seed=0)
            return rl.run(exp, progress=False)
        return asyncio.run(_bare(url + "/get", count, WORKERS, 0))

    once(WARMUP)
    gc.collect()
    before = _maxrss_bytes()
    result = once(n)
    after = _maxrss_bytes()
    out: dict[str, Any] = {"kind": kind, "requests": n, "rss_before": before, "rss_after": after}
    if kind == "ratelab":
        df = result.df
        out["rows"] = len(df)
        out["ok"] = int(((df["status"] == 200) & df["error"].isna()).sum())
        out["frame_bytes"] = int(df.memory_usage(deep=True).sum())
    else:
        out["rows"] = None
        out["ok"] = int(result[0])
    return out


def measure(kind: str, url: str, n: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, url, str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {kind} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["delta_bytes"] = out["rss_after"] - out["rss_before"]
    out["bytes_per_request"] = out["delta_bytes"] / n
    if out.get("frame_bytes") is not None:
        out["frame_bytes_per_row"] = out["frame_bytes"] / max(out["rows"], 1)
    return out


def run(n: int) -> dict[str, Any]:
    with server_process("ratelab") as url:
        lab = measure("ratelab", url, n)
        bare = measure("bare", url, n)
    recording = lab["bytes_per_request"] - bare["bytes_per_request"]
    return {
        "benchmark": "memory",
        "server": "ratelab.server.local.serve (separate process)",
        "requests": n,
        "workers": WORKERS,
        "ratelab": lab,
        "bare": bare,
        "bytes_per_request": lab["bytes_per_request"],
        "bare_bytes_per_request": bare["bytes_per_request"],
        "recording_bytes_per_request": recording,
        "peak_rss_ratio": lab["rss_after"] / bare["rss_after"],
        "headline": [
            headline("peak RSS growth, bytes/request", round(lab["bytes_per_request"], 1), "info"),
            headline("  bare aiohttp loop, bytes/request", round(bare["bytes_per_request"], 1)),
            headline("  Result frame, bytes/row", round(lab.get("frame_bytes_per_row", 0.0), 1)),
            headline("peak RSS ratelab / bare", round(lab["rss_after"] / bare["rss_after"], 3)),
        ],
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, url, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(child(kind, url, n)))
        return 0
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=None)
    args = p.parse_args(argv)
    n = args.requests or (2000 if args.smoke else 100_000)
    report = run(n)
    report["smoke"] = args.smoke
    lab, bare = report["ratelab"], report["bare"]
    print(
        f"{n:,} requests: ratelab +{lab['delta_bytes'] / 2**20:.1f} MiB "
        f"({lab['bytes_per_request']:.0f} B/request; frame {lab.get('frame_bytes_per_row', 0):.0f}"
        f" B/row), bare +{bare['delta_bytes'] / 2**20:.1f} MiB "
        f"({bare['bytes_per_request']:.0f} B/request)"
    )
    write_report(report, default_out("memory", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
