"""The recipe as written vs the same experiment in ratelab: same requests, same rate?

    python benchmarks/bench_recipe.py [--smoke] [--out PATH] [--requests N] [--rate R]

The recipe is the classic blog-post script: W workers pull from an ``asyncio.Queue``, an
``aiolimiter.AsyncLimiter(rate, 1)`` and a ``TCPConnector(limit=10)``, and each request is
``async with limiter: async with session.get(url) as resp: await resp.read()``. ratelab
runs the same experiment: ``Experiment(strategy=RateLimit(rate) + ConnectionLimit(10),
workers=W, requests=N)``. Both hit the ratelab server in a separate process, alternating
in pairs (after one warm-up each). Figures: each side's achieved rate (requests / wall
time of the whole call, and the steady rate of the middle 80% of completions, as
``summary`` computes it), the ratio of the two, and the ratio of wall times.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import aiohttp
import numpy as np
from _common import (
    default_out,
    describe,
    headline,
    machine_info,
    parser,
    server_process,
    write_report,
)
from aiolimiter import AsyncLimiter

import ratelab as rl

WORKERS = 20
CONNECTIONS = 10


async def recipe(url: str, n: int, rate: float, done_at: list[float]) -> int:
    """The script as people write it (plus one list.append to time completions)."""
    loop = asyncio.get_running_loop()
    limiter = AsyncLimiter(rate, 1)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    ok = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        while True:
            await queue.get()
            try:
                async with limiter:
                    async with session.get(url) as resp:
                        await resp.read()
                        ok += resp.status == 200
                done_at.append(loop.time())
            except Exception:
                pass
            finally:
                queue.task_done()

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(WORKERS)]
        await queue.join()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return ok


def steady_rate(done: np.ndarray) -> float:
    """summary()'s steady_rate_per_s: (m - 1) / span of the middle 80% of completions."""
    d = np.sort(done[np.isfinite(done)])
    k = int(d.size * 0.10)
    mid = d[k : d.size - k]
    return (mid.size - 1) / float(mid[-1] - mid[0]) if mid.size >= 2 else float("nan")


def run_recipe(url: str, n: int, rate: float) -> dict[str, Any]:
    done_at: list[float] = []
    gc.collect()
    t = time.perf_counter()
    ok = asyncio.run(recipe(url + "/get", n, rate, done_at))
    wall = time.perf_counter() - t
    return {
        "wall_s": wall,
        "rate_per_s": n / wall,
        "steady_rate_per_s": steady_rate(np.array(done_at)),
        "ok": ok,
    }


def run_ratelab(url: str, n: int, rate: float) -> dict[str, Any]:
    exp = rl.Experiment(
        target=url,
        requests=n,
        workers=WORKERS,
        strategy=rl.RateLimit(rate) + rl.ConnectionLimit(CONNECTIONS),
        seed=0,
    )
    gc.collect()
    t = time.perf_counter()
    result = rl.run(exp, progress=False)
    wall = time.perf_counter() - t
    df = result.df
    summ = rl.summary(df).iloc[0]
    return {
        "wall_s": wall,
        "rate_per_s": n / wall,
        "steady_rate_per_s": float(summ["steady_rate_per_s"]),
        "ok": int(summ["ok"]),
        "rows": len(df),
        "engine_wall_s": float(result.meta["wall_s"]),
        "max_sent_1s": int(summ["max_sent_1s"]),
    }


def run(n: int, rate: float, pairs: int) -> dict[str, Any]:
    samples = []
    with server_process("ratelab") as url:
        run_recipe(url, min(n, 50), 1000.0)
        run_ratelab(url, min(n, 50), 1000.0)
        for i in range(pairs):
            if i % 2 == 0:
                a = run_recipe(url, n, rate)
                b = run_ratelab(url, n, rate)
            else:
                b = run_ratelab(url, n, rate)
                a = run_recipe(url, n, rate)
            samples.append(
                {
                    "recipe": a,
                    "ratelab": b,
                    "rate_ratio": b["rate_per_s"] / a["rate_per_s"],
                    "steady_ratio": b["steady_rate_per_s"] / a["steady_rate_per_s"],
                    "wall_ratio": b["wall_s"] / a["wall_s"],
                }
            )
            print(
                f"pair {i}: recipe {a['wall_s']:.3f} s ({a['rate_per_s']:.1f}/s), ratelab "
                f"{b['wall_s']:.3f} s ({b['rate_per_s']:.1f}/s); steady "
                f"{a['steady_rate_per_s']:.2f} vs {b['steady_rate_per_s']:.2f}/s"
            )
    wall = describe([s["wall_ratio"] for s in samples])
    rate_r = describe([s["rate_ratio"] for s in samples])
    steady_r = describe([s["steady_ratio"] for s in samples])
    return {
        "benchmark": "recipe",
        "server": "ratelab.server.local.serve (separate process)",
        "requests": n,
        "rate_per_s": rate,
        "workers": WORKERS,
        "connections": CONNECTIONS,
        "pairs": samples,
        "wall_ratio": wall,
        "rate_ratio": rate_r,
        "steady_rate_ratio": steady_r,
        "same_request_count": all(
            s["recipe"]["ok"] == n and s["ratelab"]["ok"] == n and s["ratelab"]["rows"] == n
            for s in samples
        ),
        "headline": [
            headline("ratelab / recipe, wall time", round(wall["median"], 4), "~1"),
            headline("ratelab / recipe, achieved rate", round(rate_r["median"], 4), "1 +- 0.01"),
            headline("ratelab / recipe, steady rate", round(steady_r["median"], 4), "1 +- 0.01"),
        ],
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=None)
    p.add_argument("--rate", type=float, default=None)
    p.add_argument("--pairs", type=int, default=None)
    args = p.parse_args(argv)
    n = args.requests or (150 if args.smoke else 1000)
    rate = args.rate or (100.0 if args.smoke else 200.0)
    report = run(n, rate, args.pairs or (1 if args.smoke else 3))
    report["smoke"] = args.smoke
    write_report(report, default_out("recipe", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
