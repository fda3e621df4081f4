"""The explorer: how long from a control's change to the new figure (target < 0.5 s for
experiments up to 2,000 requests).

    python benchmarks/bench_explore.py [--smoke] [--out PATH]

For 500, 1,000 and 2,000 requests (``RateLimit(20) + ConnectionLimit(10)``, 50 workers,
server latency ``Fixed(0.2)`` with ``ServerRateLimit(25)``, seed 1) an explorer with
``rate``, ``connections`` and ``algorithm`` controls takes a student's path: ``rate`` up
20 -> 40 a step at a time (as arrow keys move a slider), ``connections`` down 10 -> 3, then
each server algorithm. Each change is made like the widget makes it (the control's
``value`` is set, its observer fires) and waited for; the time from the change to the new
PNG in the Image widget is ``Explorer.latencies`` (the worker's own stamps). Reported: its
distribution; the process CPU time per change (all threads: what one idle core would
take, which the machine's load does not move); how many redraws drew the axes again
(sticky limits: the rest only blit lines); and, right after each change, ``rl.simulate``
alone on the same setting (the floor the explorer adds its drawing to), as a ratio per pair.

No kernel or browser: the widgets run without a front end (their messages go nowhere), so
this is the kernel's side of the latency; the front end then decodes one PNG of ~40 kB.
"""

from __future__ import annotations

import time
from typing import Any

from _common import default_out, describe, headline, machine_info, parser, write_report

import ratelab as rl

TARGET = "http://127.0.0.1:8080"  # never contacted
ALGORITHMS = ["fixed_window", "sliding_window", "token_bucket", "gcra"]


def _path(smoke: bool) -> list[tuple[str, object]]:
    rates = range(21, 24) if smoke else range(21, 41)
    conns = range(9, 7, -1) if smoke else range(9, 2, -1)
    algorithms = ALGORITHMS[1:2] if smoke else [*ALGORITHMS[1:], ALGORITHMS[0]]
    return (
        [("rate", float(r)) for r in rates]
        + [("connections", c) for c in conns]
        + [("algorithm", a) for a in algorithms]
    )


def _run(requests: int, smoke: bool) -> dict[str, Any]:
    from ratelab.explorer.controls import ServerConfig, apply_setting

    server = rl.LocalServer(latency=rl.Fixed(0.2), seed=1, rate_limit=rl.ServerRateLimit(25))
    exp = rl.Experiment(target=TARGET, requests=requests, workers=50, seed=1,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(10))  # fmt: skip
    explorer = rl.explore(exp, server, rate=(5, 60), connections=(1, 50), algorithm=ALGORITHMS)
    setting = {"rate": 20.0, "connections": 10, "algorithm": "fixed_window"}
    cpu, sim, sim_cpu = [], [], []
    for name, value in _path(smoke):
        started = time.process_time()
        explorer.controls[name].value = value  # the widget's observer fires, as in a browser
        explorer.wait()
        cpu.append(time.process_time() - started)  # every thread of the process
        # side by side: rl.simulate alone on the same setting (the floor under the figure)
        setting[name] = value
        e, config = apply_setting(exp, ServerConfig.of(server), setting)
        started, started_cpu = time.perf_counter(), time.process_time()
        rl.simulate(e, None if config is None else config.build(), progress=False)
        sim.append(time.perf_counter() - started)
        sim_cpu.append(time.process_time() - started_cpu)
    latency = [s for _, s in explorer.latencies[1:]]  # [0]: the first draw, when built
    full_draws = explorer._canvas.full_draws - 1
    explorer.close()
    under = sum(s < 0.5 for s in latency)
    ratios = [a / b for a, b in zip(latency, sim, strict=True)]
    out = {
        "requests": requests,
        "changes": len(latency),
        "change_to_figure_s": latency,
        "change_to_figure": describe(latency),
        "p90_s": sorted(latency)[int(0.9 * (len(latency) - 1))],
        "under_0.5s": under,
        "cpu_s_per_change": cpu,
        "cpu_per_change": describe(cpu),
        "simulate_alone_s": sim,
        "simulate_alone": describe(sim),
        "simulate_alone_cpu": describe(sim_cpu),
        "explorer_over_simulate": describe(ratios),
        "full_draws": full_draws,
    }
    print(
        f"{requests:>5} requests: change -> figure median {out['change_to_figure']['median']:.3f}"
        f" s, p90 {out['p90_s']:.3f} s, max {out['change_to_figure']['max']:.3f} s; "
        f"{under}/{len(latency)} under 0.5 s; CPU per change median "
        f"{out['cpu_per_change']['median']:.3f} s (simulate alone "
        f"{out['simulate_alone_cpu']['median']:.3f} s); explorer / simulate alone (pairs) "
        f"median {out['explorer_over_simulate']['median']:.2f}; {full_draws} full draws",
        flush=True,
    )
    return out


def main() -> None:
    args = parser(__doc__).parse_args()
    try:
        import ipywidgets  # noqa: F401  (the explorer's widgets: the `notebooks` extra)
    except ImportError:  # e.g. the dependency-floor venv: say so, measure nothing
        reason = "ipywidgets not installed (pip install 'ratelab[notebooks]')"
        print(f"explore: skipped: {reason}")
        report = {"smoke": args.smoke, "machine": machine_info(), "skipped": reason,
                  "headline": [headline("explore: skipped", reason)]}  # fmt: skip
        write_report(report, default_out("explore", args))
        return
    sizes = [200] if args.smoke else [500, 1000, 2000]
    warm = rl.Experiment(target=TARGET, requests=20, seed=1, strategy=rl.RateLimit(20))
    rl.explore(warm, rate=(5, 60)).close()  # imports, fonts
    report: dict[str, Any] = {"smoke": args.smoke, "machine": machine_info(), "runs": {}}
    for n in sizes:
        report["runs"][str(n)] = _run(n, args.smoke)
    report["loadavg_after"] = machine_info().get("loadavg_1_5_15m")
    largest = report["runs"][str(sizes[-1])]
    report["headline"] = [
        headline(
            f"explore: change -> figure, median s ({sizes[-1]} requests)",
            largest["change_to_figure"]["median"],
            "< 0.5",
        ),
        headline(
            f"explore: change -> figure, p90 s ({sizes[-1]} requests)", largest["p90_s"], "< 0.5"
        ),
        headline(
            f"explore: CPU s per change, median ({sizes[-1]} requests)",
            largest["cpu_per_change"]["median"],
            "< 0.5",
        ),
        headline(
            "explore / simulate alone (median of pairs)",
            largest["explorer_over_simulate"]["median"],
        ),
    ]
    write_report(report, default_out("explore", args))


if __name__ == "__main__":
    main()
