"""uvloop (optional, ``loop="uvloop"``): does it raise the ceiling, and does it keep rate
limits honest and cheap?

    python benchmarks/bench_uvloop.py [--smoke] [--out PATH]

Only when ``uvloop`` is importable (``pip install 'ratelab[uvloop]'``; ``make test``
installs it); otherwise the report says ``"skipped"``. Three parts, each side by side:

1. **Ceiling.** ``Unlimited()``, 50 workers, against the minimal server (so the client is
   the bottleneck): ratelab on asyncio vs ratelab on uvloop, and the bare loop on each,
   in alternating rounds. Figures: uvloop's speed-up of each client, and ratelab / bare
   on each loop (median of per-round ratios).
2. **Limiter CPU.** No HTTP: 50 tasks acquiring one limiter for ``D`` seconds at
   1,000/s and 5,000/s, for each loop, with aiolimiter's ``AsyncLimiter`` as shipped and
   with ratelab's (which moves a sub-millisecond wake-up out to uvloop's 1 ms tick).
   Figures: CPU in % of a core (process time / wall time) and the achieved rate / target.
   Stock aiolimiter on uvloop busy-waits: its timer for a sub-millisecond gap fires at once.
3. **Rate-limited runs.** ``RateLimit(r)`` through ``rl.run`` on each loop, against the
   ratelab server (``bench_rate.measure``): client CPU per request (the run and
   its few ms of analysis) and the steady rate / target (``summary``'s
   ``steady_rate_per_s`` of the requests sent after the first second, as in
   ``bench_rate.py``) — uvloop must not make these worse.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import time
from collections.abc import Callable
from typing import Any

from _common import (
    default_out,
    describe,
    headline,
    machine_info,
    parser,
    server_process,
    write_report,
)
from bench_overhead import run_bare, run_ratelab
from bench_rate import measure

import ratelab as rl
from ratelab.client.guards import _AsyncLimiter
from ratelab.client.loops import loop_factory

WORKERS = 50
LOOPS = ("asyncio", "uvloop")


# ------------------------------------------------------------------ 1. the ceiling


def _ratelab(url: str, n: int, loop: str) -> dict[str, Any]:
    result = run_ratelab(url, n, WORKERS, rl.Unlimited(), loop=loop)
    assert result["loop"] == loop
    return result


def ceiling(n: int, rounds: int) -> dict[str, Any]:
    clients: dict[str, Callable[[str, int, str], dict[str, Any]]] = {
        "bare": lambda url, n, loop: run_bare(url, n, WORKERS, 0, loop=loop),
        "ratelab": _ratelab,
    }
    runs: list[dict[str, Any]] = []
    with server_process("minimal") as url:
        for fn in clients.values():  # warm-up
            for loop in LOOPS:
                fn(url, max(n // 10, 50), loop)
        for i in range(rounds):
            order = [(c, lp) for c in clients for lp in LOOPS]
            if i % 2:
                order.reverse()
            samples = {f"{c}/{lp}": clients[c](url, n, lp) for c, lp in order}
            runs.append(samples)

    def ratio(a: str, b: str) -> dict[str, float]:
        return describe([r[a]["rate_per_s"] / r[b]["rate_per_s"] for r in runs])

    return {
        "requests": n,
        "rounds": runs,
        "uvloop_speedup_bare": ratio("bare/uvloop", "bare/asyncio"),
        "uvloop_speedup_ratelab": ratio("ratelab/uvloop", "ratelab/asyncio"),
        "ratelab_over_bare_asyncio": ratio("ratelab/asyncio", "bare/asyncio"),
        "ratelab_over_bare_uvloop": ratio("ratelab/uvloop", "bare/uvloop"),
        "cpu_us_per_request": {
            key: describe([r[key]["cpu_us_per_request"] for r in runs]) for key in runs[0]
        },
        "all_ok": all(s["ok"] == n for r in runs for s in r.values()),
    }


# ------------------------------------------------------------------ 2. limiter CPU


async def _limiter_load(limiter: Any, duration_s: float) -> dict[str, float]:
    for _ in range(int(limiter.max_rate)):  # spend the initial burst first
        await limiter.acquire()
    n = 0
    c, t = time.process_time(), time.perf_counter()
    stop = t + duration_s

    async def task() -> None:
        nonlocal n
        while time.perf_counter() < stop:
            await limiter.acquire()
            n += 1

    await asyncio.gather(*(task() for _ in range(WORKERS)))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"cpu_pct_of_core": 100 * cpu / wall, "rate_per_s": n / wall}


def limiter_cpu(rates: tuple[int, ...], duration_s: float) -> list[dict[str, Any]]:
    from aiolimiter import AsyncLimiter

    out = []
    for rate in rates:
        for loop in LOOPS:
            for name, cls in (("aiolimiter", AsyncLimiter), ("ratelab", _AsyncLimiter)):
                with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
                    m = runner.run(_limiter_load(cls(rate, 1), duration_s))
                out.append(
                    {
                        "rate_per_s_target": rate,
                        "loop": loop,
                        "limiter": name,
                        "cpu_pct_of_core": m["cpu_pct_of_core"],
                        "rate_over_target": m["rate_per_s"] / rate,
                    }
                )
    return out


# ------------------------------------------------------------------ 3. rate-limited runs


def rate_limited(rates: tuple[int, ...], seconds: float) -> list[dict[str, Any]]:
    out = []
    with server_process("ratelab") as url:
        for rate in rates:
            for loop in LOOPS:
                n = int(rate * (2 + seconds))  # 2r in the first second, then `seconds` at r
                gc.collect()
                c = time.process_time()
                m = measure(url, rate, n, loop=loop)  # bench_rate's steady rate past the burst
                cpu = time.process_time() - c
                out.append(
                    {
                        "rate_per_s_target": rate,
                        "loop": loop,
                        "requests": n,
                        "ok": m["ok"],
                        "cpu_us_per_request": cpu / n * 1e6,
                        "steady_over_target": m["steady_over_target"],
                    }
                )
    return out


# ------------------------------------------------------------------ report


def run(*, n: int, rounds: int, limiter_s: float, limited_s: float) -> dict[str, Any]:
    if importlib.util.find_spec("uvloop") is None:
        return {
            "benchmark": "uvloop",
            "skipped": "uvloop not installed (pip install 'ratelab[uvloop]')",
            "headline": [headline("uvloop", "skipped: uvloop not installed")],
            "machine": machine_info(),
        }
    import uvloop

    report: dict[str, Any] = {"benchmark": "uvloop", "uvloop": uvloop.__version__}
    report["ceiling"] = ceiling(n, rounds)
    report["limiter_cpu"] = limiter_cpu((1000, 5000), limiter_s)
    report["rate_limited"] = rate_limited((1000, 5000), limited_s)
    c = report["ceiling"]
    rows = [
        headline(label, round(c[key]["median"], 3))
        for label, key in (
            ("uvloop speed-up, ratelab Unlimited()", "uvloop_speedup_ratelab"),
            ("uvloop speed-up, bare loop", "uvloop_speedup_bare"),
            ("ratelab / bare on asyncio", "ratelab_over_bare_asyncio"),
            ("ratelab / bare on uvloop", "ratelab_over_bare_uvloop"),
        )
    ]
    for m in report["limiter_cpu"]:
        rows.append(
            headline(
                f"limiter CPU % of a core, {m['rate_per_s_target']}/s, {m['loop']}, {m['limiter']}",
                f"{m['cpu_pct_of_core']:.1f} (rate {m['rate_over_target']:.4f})",
            )
        )
    for m in report["rate_limited"]:
        rows.append(
            headline(
                f"RateLimit({m['rate_per_s_target']}) run, {m['loop']}: us/request; steady/target",
                f"{m['cpu_us_per_request']:.1f}; {m['steady_over_target']:.4f}",
            )
        )
    report["headline"] = rows
    report["machine"] = machine_info()
    return report


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    args = p.parse_args(argv)
    if args.smoke:
        report = run(n=200, rounds=1, limiter_s=0.2, limited_s=0.3)
    else:
        report = run(n=10_000, rounds=5, limiter_s=2.0, limited_s=3.0)
    report["smoke"] = args.smoke
    for row in report["headline"]:
        print(f"{row['metric']:<72} {row['value']}")
    write_report(report, default_out("uvloop", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
