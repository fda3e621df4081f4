"""httpx as the client: ratelab with ``client="httpx"`` vs a bare httpx loop; httpx vs aiohttp.

    python benchmarks/bench_httpx.py [--smoke] [--out PATH] [--requests N] [--pairs P]

Every client runs in this process, one after the other, against the same target server in a
separate process (``ratelab.server.local.serve``): ``W=50`` workers pulling ``N`` request ids
from an ``asyncio.Queue``, each sending one GET and reading the body.

* ratelab: ``rl.run(Experiment(..., client="httpx", workers=50), progress=False)`` with full
  recording (timed end to end, as in ``bench_overhead.py``).
* bare: the same loop by hand on one ``httpx.AsyncClient`` with the same pool size
  (``client.stream("GET", url)`` + ``aread()``), no recording.

Lines (each: one warm-up of each, then alternating pairs; the figure is the median of the
per-pair ratios ratelab_rate / bare_rate, target >= 0.90, as for aiohttp):

* ``unlimited``: ``Unlimited()`` vs ``httpx.Limits(max_connections=None)``;
* ``connection_limit_50``: ``ConnectionLimit(50)`` (the pool-stamping pool, never full
  with 50 workers) vs ``max_connections=50``;
* ``connection_limit_10``: ``ConnectionLimit(10)`` vs ``max_connections=10``: 40 of the 50
  workers wait for the pool, so every request is a pool wait stamped (queued + acquired).

Also measured: the cost of httpx's ``trace`` extension (a no-op async callback on every
request of the bare loop vs none: client CPU microseconds per request), the alternative to
the pool subclass; and httpx vs aiohttp at full speed (bare loop vs bare loop, ratelab vs
ratelab; ``Unlimited()``), reported, no target.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
from _common import (
    default_out,
    describe,
    headline,
    machine_info,
    parser,
    server_process,
    write_report,
)
from bench_overhead import run_bare as run_bare_aiohttp

import ratelab as rl

WORKERS = 50


async def _noop_trace(event: str, info: dict[str, Any]) -> None:
    return None


async def _bare(url: str, n: int, workers: int, limit: int, trace: bool) -> tuple[int, int]:
    """The hand-written httpx loop: returns (ok, errors)."""
    q: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        q.put_nowait(i)
    ok = errors = 0
    ext = {"trace": _noop_trace} if trace else None

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal ok, errors
        while True:
            await q.get()
            try:
                async with client.stream("GET", url, extensions=ext) as resp:
                    await resp.aread()
                    ok += resp.status_code == 200
            except Exception:
                errors += 1
            finally:
                q.task_done()

    cap = limit or None
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    async with httpx.AsyncClient(limits=limits, timeout=None, trust_env=False) as client:
        tasks = [asyncio.create_task(worker(client)) for _ in range(workers)]
        await q.join()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return ok, errors


def run_bare(url: str, n: int, limit: int, *, trace: bool = False) -> dict[str, Any]:
    gc.collect()
    c, t = time.process_time(), time.perf_counter()
    with asyncio.Runner() as runner:
        ok, errors = runner.run(_bare(url + "/get", n, WORKERS, limit, trace))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "wall_s": wall,
        "rate_per_s": n / wall,
        "cpu_us_per_request": cpu / n * 1e6,
        "ok": ok,
        "errors": errors,
    }


def run_ratelab(url: str, n: int, strategy: rl.Strategy, client: str = "httpx") -> dict[str, Any]:
    exp = rl.Experiment(
        target=url, requests=n, workers=WORKERS, strategy=strategy, seed=0, client=client
    )
    gc.collect()
    c, t = time.process_time(), time.perf_counter()
    result = rl.run(exp, progress=False)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    df = result.df
    ok = int(((df["status"] == 200) & df["error"].isna()).sum())
    return {
        "wall_s": wall,
        "rate_per_s": n / wall,
        "cpu_us_per_request": cpu / n * 1e6,
        "rows": len(df),
        "ok": ok,
        "errors": len(df) - ok,
        "pool_waits": int(df["pool_queued_s"].notna().sum()),
        "transport": result.meta["transport"],
    }


def pairs_of(
    a: Callable[[int], dict[str, Any]], b: Callable[[int], dict[str, Any]], n: int, pairs: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A warm-up of each, then ``pairs`` alternating pairs (a-b, b-a, ...) of runs."""
    a(max(n // 10, 50))
    b(max(n // 10, 50))
    out = []
    for i in range(pairs):
        if i % 2 == 0:
            ra = a(n)
            rb = b(n)
        else:
            rb = b(n)
            ra = a(n)
        out.append((ra, rb))
    return out


def measure_line(url: str, *, n: int, pairs: int, strategy: rl.Strategy, limit: int) -> dict:
    runs = pairs_of(
        lambda k: run_bare(url, k, limit), lambda k: run_ratelab(url, k, strategy), n, pairs
    )
    samples = [
        {
            "bare": bare,
            "ratelab": lab,
            "ratio": lab["rate_per_s"] / bare["rate_per_s"],
            "cpu_ratio": bare["cpu_us_per_request"] / lab["cpu_us_per_request"],
        }
        for bare, lab in runs
    ]
    return {
        "strategy": repr(strategy),
        "bare_max_connections": limit or None,
        "requests": n,
        "workers": WORKERS,
        "pairs": samples,
        "ratio": describe([s["ratio"] for s in samples]),
        "best_ratio": max(s["ratelab"]["rate_per_s"] for s in samples)
        / max(s["bare"]["rate_per_s"] for s in samples),
        "cpu_ratio": describe([s["cpu_ratio"] for s in samples]),
        "bare_rate_per_s": describe([s["bare"]["rate_per_s"] for s in samples]),
        "ratelab_rate_per_s": describe([s["ratelab"]["rate_per_s"] for s in samples]),
        "bare_cpu_us_per_request": describe([s["bare"]["cpu_us_per_request"] for s in samples]),
        "ratelab_cpu_us_per_request": describe(
            [s["ratelab"]["cpu_us_per_request"] for s in samples]
        ),
        "pool_waits_per_run": describe([s["ratelab"]["pool_waits"] for s in samples]),
        "all_ok": all(
            s["bare"]["ok"] == n and s["ratelab"]["ok"] == n and s["ratelab"]["rows"] == n
            for s in samples
        ),
    }


def measure_trace(url: str, *, n: int, pairs: int) -> dict[str, Any]:
    """The bare httpx loop with a no-op ``trace`` callback vs without: CPU per request."""
    runs = pairs_of(
        lambda k: run_bare(url, k, 0), lambda k: run_bare(url, k, 0, trace=True), n, pairs
    )
    extra = [t["cpu_us_per_request"] - b["cpu_us_per_request"] for b, t in runs]
    return {
        "requests": n,
        "pairs": [{"bare": b, "trace": t} for b, t in runs],
        "extra_cpu_us_per_request": describe(extra),
        "rate_ratio": describe([t["rate_per_s"] / b["rate_per_s"] for b, t in runs]),
    }


def measure_versus(url: str, *, n: int, pairs: int) -> dict[str, Any]:
    """httpx vs aiohttp at full speed (Unlimited, 50 workers): bare loops, then ratelab."""
    bare = pairs_of(
        lambda k: run_bare_aiohttp(url, k, WORKERS, 0), lambda k: run_bare(url, k, 0), n, pairs
    )
    lab = pairs_of(
        lambda k: run_ratelab(url, k, rl.Unlimited(), "aiohttp"),
        lambda k: run_ratelab(url, k, rl.Unlimited(), "httpx"),
        n,
        pairs,
    )
    out: dict[str, Any] = {"requests": n}
    for name, runs in (("bare", bare), ("ratelab", lab)):
        out[name] = {
            "aiohttp_rate_per_s": describe([a["rate_per_s"] for a, _ in runs]),
            "httpx_rate_per_s": describe([h["rate_per_s"] for _, h in runs]),
            "httpx_over_aiohttp": describe([h["rate_per_s"] / a["rate_per_s"] for a, h in runs]),
            "aiohttp_cpu_us_per_request": describe([a["cpu_us_per_request"] for a, _ in runs]),
            "httpx_cpu_us_per_request": describe([h["cpu_us_per_request"] for _, h in runs]),
        }
    return out


def run(*, n: int, pairs: int) -> dict[str, Any]:
    report: dict[str, Any] = {"benchmark": "httpx", "requests": n, "workers": WORKERS}
    report["load_before"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    with server_process("ratelab") as url:
        report["lines"] = {
            "unlimited": measure_line(url, n=n, pairs=pairs, strategy=rl.Unlimited(), limit=0),
            "connection_limit_50": measure_line(
                url, n=n, pairs=pairs, strategy=rl.ConnectionLimit(50), limit=50
            ),
            "connection_limit_10": measure_line(
                url, n=n, pairs=pairs, strategy=rl.ConnectionLimit(10), limit=10
            ),
        }
        report["trace"] = measure_trace(url, n=n, pairs=pairs)
        report["versus_aiohttp"] = measure_versus(url, n=n, pairs=pairs)
    report["headline"] = _headline(report)
    report["machine"] = machine_info()
    report["machine"]["packages"]["httpx"] = httpx.__version__
    return report


def _headline(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for line in report["lines"].values():
        metric = f"httpx: {line['strategy']} / bare httpx"
        rows.append(headline(metric, round(line["ratio"]["median"], 3), ">= 0.90"))
        rows.append(headline("  best run / best run", round(line["best_ratio"], 3)))
    trace = report["trace"]["extra_cpu_us_per_request"]["median"]
    rows.append(headline("httpx trace extension (no-op), CPU us/request", round(trace, 1)))
    vs = report["versus_aiohttp"]
    rows.append(
        headline("bare httpx / bare aiohttp", round(vs["bare"]["httpx_over_aiohttp"]["median"], 3))
    )
    rows.append(
        headline(
            "ratelab httpx / ratelab aiohttp",
            round(vs["ratelab"]["httpx_over_aiohttp"]["median"], 3),
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=None, help="requests per run")
    p.add_argument("--pairs", type=int, default=None, help="pairs per line")
    args = p.parse_args(argv)
    n = args.requests or (100 if args.smoke else 5_000)
    pairs = args.pairs or (1 if args.smoke else 5)
    report = run(n=n, pairs=pairs)
    report["smoke"] = args.smoke
    for row in report["headline"]:
        print(f"{row['metric']:<50} {row['value']}")
    for name, line in report["lines"].items():
        print(
            f"  {name:<20} bare {line['bare_rate_per_s']['median']:8.0f}/s  "
            f"ratelab {line['ratelab_rate_per_s']['median']:8.0f}/s  "
            f"ratios {[round(s['ratio'], 3) for s in line['pairs']]}"
        )
    write_report(report, default_out("httpx", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
