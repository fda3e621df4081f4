"""Rate fidelity: the steady rate ``RateLimit(r)`` achieves, over its target ``r``.

    python benchmarks/bench_rate.py [--smoke] [--out PATH] [--rates 10,100,1000,2000]

For each r: ``Experiment(strategy=RateLimit(r), workers=max(50, r / 20), requests=5 * r)``
against the ratelab server (latency 0) in a separate process, so the limiter, not the
client or the server, is the bottleneck. Figures:

* ``steady_over_target``: ``summary(...)["steady_rate_per_s"] / r`` over the requests sent
  after the first second (expected 1 +- 1%). A fresh ``aiolimiter.AsyncLimiter(r, 1)``
  admits r requests at once (its bucket starts empty), then one every 1/r s, so the first
  second holds 2r sends; the steady state is the 3r that follow (~3 s, of which summary's
  trim of the first and last 10% of completions keeps ~2.4 s).
* ``steady_all_rows_over_target``: the same on every row, burst included (so above 1: the
  burst is 20% of the run, more than the 10% summary trims).
* ``max_sent_1s_over_target``: the largest number of requests sent in any 1 s window
  (``analysis.windows``) over r: ~2 for a fresh limiter (r at once, r more within 1 s).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from _common import (
    default_out,
    describe,
    finite,
    headline,
    machine_info,
    parser,
    server_process,
    write_report,
)

import ratelab as rl
from ratelab.analysis import metrics as analysis

FULL_RATES = (10, 100, 1000, 2000)
SMOKE_RATES = (100, 1000)


def workers_for(rate: float) -> int:
    return max(50, math.ceil(rate / 20))


def measure(url: str, rate: float, requests: int, *, loop: str = "asyncio") -> dict[str, Any]:
    workers = workers_for(rate)
    exp = rl.Experiment(
        target=url,
        requests=requests,
        workers=workers,
        strategy=rl.RateLimit(rate),
        seed=0,
        loop=loop,
    )
    result = rl.run(exp, progress=False)
    df = result.df
    row = analysis.summary(df).iloc[0]
    sent_all = df["sent_s"].to_numpy(dtype=float)
    steady_part = df[sent_all >= np.nanmin(sent_all) + 1.0]  # after the initial burst
    steady = float(analysis.summary(steady_part).iloc[0]["steady_rate_per_s"])
    steady_all = float(row["steady_rate_per_s"])
    win = analysis.windows(df, window_s=1.0)
    sent = np.sort(df["sent_s"].to_numpy(dtype=float))
    sent = sent[np.isfinite(sent)]
    after = sent[sent >= sent[0] + 1.0] if sent.size else sent
    post = (after.size - 1) / (after[-1] - after[0]) if after.size >= 2 else math.nan
    gaps = np.diff(sent[sent >= sent[0] + 1.0]) if sent.size else np.zeros(0)
    return {
        "target_rate_per_s": rate,
        "workers": workers,
        "requests": requests,
        "rows": len(df),
        "ok": int(row["ok"]),
        "errors": int(row["errors"]),
        "duration_s": float(row["duration_s"]),
        "steady_rate_per_s": finite(steady),
        "steady_over_target": finite(steady / rate),
        "steady_rows": len(steady_part),
        "steady_all_rows_rate_per_s": finite(steady_all),
        "steady_all_rows_over_target": finite(steady_all / rate),
        "send_rate_after_1s_per_s": finite(post),
        "send_rate_after_1s_over_target": finite(post / rate),
        "max_sent_1s": int(win.max_sent),
        "max_sent_1s_at_s": finite(win.t_s),
        "max_sent_1s_over_target": win.max_sent / rate,
        "limiter_wait_mean_s": finite(float(row["limiter_wait_mean_s"])),
        "latency_p50_s": finite(float(row["latency_p50_s"])),
        "latency_p99_s": finite(float(row["latency_p99_s"])),
        "send_gap_ms_after_1s": (
            {k: v * 1e3 for k, v in describe(gaps).items()} if gaps.size >= 2 else None
        ),
        "wall_s": float(result.meta["wall_s"]),
    }


def run(rates: tuple[float, ...], *, requests_per_rate: float) -> dict[str, Any]:
    results = []
    with server_process("ratelab") as url:
        rl.run(rl.Experiment(target=url, requests=50, workers=10), progress=False)  # warm-up
        for r in rates:
            n = max(20, math.ceil(requests_per_rate * r))
            results.append(measure(url, r, n))
            print(
                f"RateLimit({r:g}): steady {results[-1]['steady_rate_per_s']:.2f}/s "
                f"= {results[-1]['steady_over_target']:.4f} x target; "
                f"max in 1 s {results[-1]['max_sent_1s']}"
            )
    report: dict[str, Any] = {
        "benchmark": "rate",
        "server": "ratelab.server.local.serve (separate process, latency 0)",
        "requests_per_rate": f"{requests_per_rate:g} x r",
        "results": results,
        "headline": [
            headline(
                f"RateLimit({r['target_rate_per_s']:g}) steady / target",
                None if r["steady_over_target"] is None else round(r["steady_over_target"], 4),
                "1 +- 0.01",
            )
            for r in results
        ]
        + [
            headline(
                f"RateLimit({r['target_rate_per_s']:g}) max in 1 s window / r",
                round(r["max_sent_1s_over_target"], 3),
                "~2 (burst)",
            )
            for r in results
        ],
        "machine": machine_info(),
    }
    return report


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--rates", default=None, help="comma-separated target rates (req/s)")
    args = p.parse_args(argv)
    if args.rates:
        rates = tuple(float(x) for x in args.rates.split(","))
    else:
        rates = SMOKE_RATES if args.smoke else FULL_RATES
    report = run(rates, requests_per_rate=3 if args.smoke else 5)
    report["smoke"] = args.smoke
    write_report(report, default_out("rate", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
