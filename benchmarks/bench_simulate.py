"""Virtual time: how fast ``rl.simulate`` is, in simulated requests per CPU second and in
simulated seconds per wall second.

    python benchmarks/bench_simulate.py [--smoke] [--out PATH]

Three runs (each after a warm-up, so imports are not counted; the best of ``repeats``):

* ``cpu``: ``RateLimit(1000) + ConnectionLimit(10)``, 50 workers, 20,000 requests, server
  latency ``Uniform(0.005, 0.02)``, full recording (the frame and the server log are built):
  requests / CPU second of this process (``time.process_time``). Target >= 20,000.
* ``minute``: a 60 s experiment, ``RateLimit(100) + ConnectionLimit(10)``, 6,000 requests,
  latency ``Uniform(0.05, 0.2)``: virtual seconds / wall seconds. Target >= 50.
* ``day``: 24 h of open-loop ``Constant(2)`` traffic (172,800 requests, 20 workers) against
  ``ServerRateLimit(5000, 3600)``: virtual seconds / wall seconds. Target >= 5,000.

The machine's load average is recorded with the figures: wall-clock ratios move with it.
"""

from __future__ import annotations

import time
from typing import Any

from _common import default_out, headline, machine_info, parser, write_report

import ratelab as rl

TARGET = "http://127.0.0.1:8080"  # never contacted


def _cases(smoke: bool) -> dict[str, tuple[rl.Experiment, rl.LocalServer]]:
    k = 100 if smoke else 1
    return {
        "cpu": (
            rl.Experiment(target=TARGET, requests=20_000 // k, workers=50, seed=1,
                          strategy=rl.RateLimit(1000) + rl.ConnectionLimit(10)),
            rl.LocalServer(latency=rl.Uniform(0.005, 0.02), seed=1),
        ),
        "minute": (
            rl.Experiment(target=TARGET, requests=6_000 // k, workers=50, seed=1,
                          strategy=rl.RateLimit(100) + rl.ConnectionLimit(10)),
            rl.LocalServer(latency=rl.Uniform(0.05, 0.2), seed=1),
        ),
        "day": (
            rl.Experiment(target=TARGET, requests=172_800 // k, workers=20, seed=1,
                          arrivals=rl.Constant(2.0)),
            rl.LocalServer(latency=rl.Uniform(0.05, 0.2), seed=1,
                           rate_limit=rl.ServerRateLimit(5000, 3600.0)),
        ),
    }  # fmt: skip


def _measure(exp: rl.Experiment, server: rl.LocalServer) -> dict[str, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = rl.simulate(exp, server, progress=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    virtual = float(result.meta["virtual_s"])
    return {
        "rows": len(result.df),
        "ok": int((result.df.status == 200).sum()),
        "server_log_rows": len(result.server_log),
        "cpu_s": cpu,
        "wall_s": wall,
        "virtual_s": virtual,
        "requests_per_cpu_s": len(result.df) / cpu,
        "virtual_over_wall": virtual / wall,
    }


def main() -> None:
    args = parser(__doc__).parse_args()
    repeats = 1 if args.smoke else 3
    warm_exp, warm_server = _cases(True)["cpu"]
    rl.simulate(warm_exp.replace(requests=50), warm_server, progress=False)  # imports
    report: dict[str, Any] = {"smoke": args.smoke, "machine": machine_info(), "runs": {}}
    for name, (exp, server) in _cases(args.smoke).items():
        runs = [_measure(exp, server) for _ in range(repeats)]
        report["runs"][name] = {"requests": exp.requests, "repeats": runs}
        print(name, [round(r["requests_per_cpu_s"]) for r in runs],
              [round(r["virtual_over_wall"], 1) for r in runs], flush=True)  # fmt: skip
    best = {n: r["repeats"] for n, r in report["runs"].items()}
    cpu_rate = max(r["requests_per_cpu_s"] for r in best["cpu"])
    minute = max(r["virtual_over_wall"] for r in best["minute"])
    day = max(r["virtual_over_wall"] for r in best["day"])
    report["requests_per_cpu_s"] = cpu_rate
    report["minute_speedup"] = minute
    report["day_speedup"] = day
    report["loadavg_after"] = machine_info().get("loadavg_1_5_15m")
    report["headline"] = [
        headline("simulated requests / CPU s (RateLimit+ConnLimit, 50 w)", cpu_rate, ">= 20000"),
        headline("virtual / wall, 60 s experiment (6,000 requests)", minute, ">= 50"),
        headline("virtual / wall, 24 h at 2/s (172,800 requests)", day, ">= 5000"),
    ]
    write_report(report, default_out("simulate", args))


if __name__ == "__main__":
    main()
