"""Fidelity: does ``rl.simulate`` give the figures a real run gives?

    python benchmarks/bench_fidelity.py [--smoke] [--out PATH] [--repeats N] [--only a,b]

Each scenario runs for real (``rl.run`` against a fresh ``rl.LocalServer`` on 127.0.0.1, in
this process, on its own thread; ``repeats`` times, alternating with nothing else) and
simulated (``rl.simulate`` with a ``LocalServer`` of the same configuration, never started;
deterministic, so once). Figures, from ``rl.summary`` and the frame: the steady rate, mean
in flight, mean limiter wait, mean pool wait, p50 latency, and the count of 429s. For each,
simulated / median of the real runs (target: within 3%; counts within +-2). A mean under
``FLOOR_S`` (1 ms) on both sides is reported as "both ~0" (a ratio of two near-zeros says
nothing).

The scenarios: the recipe; ``RateLimit``, ``ConnectionLimit``, ``Concurrency(endpoint=)``
and ``Unlimited`` under load (50 workers, no think time); rate meets concurrency on each
side of the crossover (``rate = min(r, c / latency)``); an open loop faster than its
``RateLimit``; a sliding-window server against a bursty and a smooth client; ``Retry``
honouring ``Retry-After`` against a fixed-window server.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from _common import default_out, finite, headline, machine_info, parser, write_report

import ratelab as rl

FLOOR_S = 0.001  # waits under 1 ms on both sides: "both ~0"
TOLERANCE = 0.03
COUNT_TOLERANCE = 2
LATENCY = rl.Uniform(0.05, 0.2)
SIM_TARGET = "http://127.0.0.1:8080"  # never contacted

METRICS = {  # name -> summary column (None: computed from the frame)
    "steady_rate_per_s": "steady_rate_per_s",
    "mean_in_flight": "mean_in_flight",
    "limiter_wait_mean_s": "limiter_wait_mean_s",
    "pool_wait_mean_s": "pool_wait_mean_s",
    "latency_p50_s": "latency_p50_s",
    "count_429": None,
}
WAITS = ("limiter_wait_mean_s", "pool_wait_mean_s")


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    requests: int
    experiment: dict[str, Any]
    server: dict[str, Any] = field(default_factory=dict)

    def exp(self, target: str, scale: float) -> rl.Experiment:
        n = max(20, round(self.requests * scale))
        return rl.Experiment(target=target, requests=n, seed=1, **self.experiment)

    def local_server(self) -> rl.LocalServer:
        return rl.LocalServer(latency=LATENCY, seed=7, **self.server)


def scenarios() -> list[Scenario]:
    load = {"workers": 50}
    return [
        Scenario("recipe", "RateLimit(20) + ConnectionLimit(10), 10 workers, think "
                 "Uniform(0.05, 1.0)", 150,
                 {"workers": 10, "think_time": rl.Uniform(0.05, 1.0),
                  "strategy": rl.RateLimit(20) + rl.ConnectionLimit(10)}),
        Scenario("rate_limit", "RateLimit(100), 50 workers", 500,
                 {**load, "strategy": rl.RateLimit(100)}),
        Scenario("connection_limit", "ConnectionLimit(10), 50 workers", 400,
                 {**load, "strategy": rl.ConnectionLimit(10)}),
        Scenario("concurrency_endpoint", "Concurrency(5, endpoint='/anything/slow'), "
                 "half the requests there, 50 workers", 300,
                 {**load, "endpoints": {"/get": 1.0, "/anything/slow": 1.0},
                  "strategy": rl.Concurrency(5, endpoint="/anything/slow")}),
        Scenario("unlimited", "Unlimited(), 50 workers", 1200, {**load}),
        Scenario("crossover_rate_bound", "RateLimit(40) + ConnectionLimit(10): "
                 "min(40, 10/0.125 = 80) = 40/s", 250,
                 {**load, "strategy": rl.RateLimit(40) + rl.ConnectionLimit(10)}),
        Scenario("crossover_conn_bound", "RateLimit(160) + ConnectionLimit(10): "
                 "min(160, 80) = 80/s", 450,
                 {**load, "strategy": rl.RateLimit(160) + rl.ConnectionLimit(10)}),
        Scenario("open_loop_overload", "Constant(80) arrivals, RateLimit(40), 50 workers",
                 250, {**load, "arrivals": rl.Constant(80.0), "strategy": rl.RateLimit(40)}),
        Scenario("sliding_bursty", "server ServerRateLimit(20, sliding_window); client "
                 "RateLimit(20), 20 workers", 120,
                 {"workers": 20, "strategy": rl.RateLimit(20)},
                 {"rate_limit": rl.ServerRateLimit(20, 1.0, algorithm="sliding_window")}),
        Scenario("sliding_smooth", "server ServerRateLimit(20, sliding_window); client "
                 "RateLimit(1, period_s=1/20), 20 workers", 120,
                 {"workers": 20, "strategy": rl.RateLimit(1, period_s=1 / 20)},
                 {"rate_limit": rl.ServerRateLimit(20, 1.0, algorithm="sliding_window")}),
        Scenario("retry_after", "Retry(5) honouring Retry-After, 20 workers, server "
                 "ServerRateLimit(30) fixed window", 150,
                 {"workers": 20, "strategy": rl.Retry(5)},
                 {"rate_limit": rl.ServerRateLimit(30, 1.0)}),
    ]  # fmt: skip


def figures(result: rl.Result) -> dict[str, float]:
    row = rl.summary(result).iloc[0]
    out = {k: float(row[c]) for k, c in METRICS.items() if c is not None}
    out["count_429"] = float((result.df["status"] == 429).sum())
    out["rows"] = float(len(result.df))
    return out


def run_real(sc: Scenario, scale: float) -> dict[str, float]:
    with sc.local_server() as server:
        result = rl.run(sc.exp(server.url, scale), progress=False)
    return figures(result)


def run_sim(sc: Scenario, scale: float) -> dict[str, float]:
    result = rl.simulate(sc.exp(SIM_TARGET, scale), sc.local_server(), progress=False)
    return figures(result)


def compare(sim: dict[str, float], real: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in METRICS:
        s, r = sim[k], real[k]
        entry: dict[str, Any] = {"sim": finite(s), "real": finite(r)}
        if k == "count_429":
            entry["diff"] = s - r
            entry["ok"] = abs(s - r) <= COUNT_TOLERANCE
        elif k in WAITS and abs(s) < FLOOR_S and abs(r) < FLOOR_S:
            entry["ratio"] = None
            entry["ok"] = True
            entry["note"] = "both ~0"
        else:
            ratio = s / r if r else float("inf")
            entry["ratio"] = finite(ratio)
            entry["ok"] = abs(ratio - 1) <= TOLERANCE
        out[k] = entry
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=None, help="real runs per scenario (5)")
    p.add_argument("--only", default="", help="comma-separated scenario names")
    args = p.parse_args()
    scale = 0.15 if args.smoke else 1.0
    repeats = args.repeats or (1 if args.smoke else 5)
    chosen = [s for s in scenarios() if not args.only or s.name in args.only.split(",")]
    report: dict[str, Any] = {
        "smoke": args.smoke,
        "machine": machine_info(),
        "repeats": repeats,
        "tolerance": TOLERANCE,
        "scenarios": {},
    }
    run_sim(chosen[0], 0.05)  # warm-up: imports
    run_real(chosen[0], 0.05)
    t_start = time.perf_counter()
    for sc in chosen:
        sim = run_sim(sc, scale)
        reals: list[dict[str, float]] = []
        for _ in range(repeats):
            gc.collect()
            reals.append(run_real(sc, scale))
        real = {k: statistics.median(r[k] for r in reals) for k in reals[0]}
        cmp = compare(sim, real)
        report["scenarios"][sc.name] = {
            "what": sc.what,
            "requests": sc.exp(SIM_TARGET, scale).requests,
            "sim": sim,
            "real_runs": reals,
            "real_median": real,
            "compare": cmp,
        }
        print(sc.name, {k: (v.get("ratio") if "ratio" in v else v.get("diff"))
                        for k, v in cmp.items()}, flush=True)  # fmt: skip
    report["wall_s"] = time.perf_counter() - t_start
    report["loadavg_after"] = machine_info().get("loadavg_1_5_15m")
    checks = [e["ok"] for s in report["scenarios"].values() for e in s["compare"].values()]
    report["within_target"] = sum(checks)
    report["figures"] = len(checks)
    ratios = [
        abs(e["ratio"] - 1)
        for s in report["scenarios"].values()
        for e in s["compare"].values()
        if e.get("ratio") is not None
    ]
    report["worst_ratio_error"] = max(ratios) if ratios else None
    report["headline"] = [
        headline(f"figures within 3% (counts +-2), {len(chosen)} scenarios",
                 f"{sum(checks)}/{len(checks)}", "all"),
        headline("worst |simulated / real - 1|", report["worst_ratio_error"], "<= 0.03"),
    ]  # fmt: skip
    write_report(report, default_out("fidelity", args))


if __name__ == "__main__":
    main()
