"""Harness overhead: requests/s through ratelab vs a bare aiohttp worker-queue loop.

    python benchmarks/bench_overhead.py [--smoke] [--out PATH] [--requests N] [--pairs P]

Both clients run in this process, one after the other, against the same target server in a
separate process (so the client and the server each get a core): ``W=50`` workers pulling
``N`` request ids from an ``asyncio.Queue``, each doing ``session.get(url)`` + ``read()``.

* ratelab: ``rl.run(Experiment(..., strategy=Unlimited(), workers=50), progress=False)`` with
  full recording (timed end to end: engine setup, the run, building the DataFrame).
* bare: the same loop written by hand with ``TCPConnector(limit=0)``, no recording.

Runs alternate in pairs (bare-ratelab, ratelab-bare, ...) after one warm-up of each; the
figure is the median of the per-pair ratios ratelab_rate / bare_rate (target >= 0.90).
Also saved: ``best_ratio`` (ratelab's best run / bare's best run, robust to bursts of other
load on a shared machine) and ``cpu_ratio`` (client CPU time per request, bare / ratelab).
Second line: ``ConnectionLimit(50)`` (the engine attaches its pool-wait trace hooks) vs bare
``limit=50``. Lines are measured against the ratelab server (``ratelab.server.local.serve``, for
realism) and a minimal aiohttp.web server (to show how much of the ceiling is the server's).
If ``wrk`` (or ``hey``) is installed, the native ceiling ``wrk -t1 -c50 -d3s URL/get`` on
the same server is reported as a ratio too; without it that part is skipped.

``--watch`` measures, instead, what watching a run costs (ratelab against ratelab, same
alternating pairs, ratelab server): the limiters' state sampled every 0.05 s (the default)
against ``state_interval_s=None`` (target: ratio >= 0.98), and the JupyterLab live view
(``live=True`` inside a running loop, as in a kernel: the run on a worker thread, the view
rendering its PNG frames every 0.4 s on the calling thread, IPython's display replaced
by a stub that keeps the frames) against ``live=False`` through the same path (target:
ratio >= 0.97). The ratios are of the engine's own rate (requests / ``meta["wall_s"]``,
the run itself; end to end, with the final figure drawn after the run, is recorded too).
A loaded machine makes them noisy, so the load-independent figure is recorded beside them:
the CPU time (``time.thread_time``) spent in the sampler's samples and in the view's
frames during the run, as a share of the run's CPU time; and the CPU per frame.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import aiohttp
from _common import (
    default_out,
    describe,
    headline,
    machine_info,
    native_rate,
    parser,
    server_process,
    write_report,
)

import ratelab as rl
from ratelab.client.loops import loop_factory

WORKERS = 50


async def _bare(url: str, n: int, workers: int, limit: int) -> tuple[int, int]:
    """The hand-written loop: returns (ok, errors)."""
    q: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        q.put_nowait(i)
    ok = errors = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok, errors
        while True:
            await q.get()
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    ok += resp.status == 200
            except Exception:
                errors += 1
            finally:
                q.task_done()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit)) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(workers)]
        await q.join()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return ok, errors


def run_bare(
    url: str, n: int, workers: int, limit: int, *, loop: str = "asyncio"
) -> dict[str, Any]:
    gc.collect()
    c, t = time.process_time(), time.perf_counter()
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        ok, errors = runner.run(_bare(url + "/get", n, workers, limit))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "wall_s": wall,
        "rate_per_s": n / wall,
        "cpu_us_per_request": cpu / n * 1e6,
        "ok": ok,
        "errors": errors,
    }


def run_ratelab(
    url: str, n: int, workers: int, strategy: rl.Strategy, *, loop: str = "asyncio"
) -> dict[str, Any]:
    exp = rl.Experiment(
        target=url, requests=n, workers=workers, strategy=strategy, seed=0, loop=loop
    )
    gc.collect()
    c, t = time.process_time(), time.perf_counter()
    result = rl.run(exp, progress=False)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    df = result.df
    ok = int(((df["status"] == 200) & df["error"].isna()).sum())
    engine_wall = float(result.meta["wall_s"])
    return {
        "wall_s": wall,
        "rate_per_s": n / wall,
        "cpu_us_per_request": cpu / n * 1e6,
        "engine_wall_s": engine_wall,
        "engine_rate_per_s": n / engine_wall,
        "rows": len(df),
        "ok": ok,
        "errors": len(df) - ok,
        "loop": result.meta["loop"],
    }


#: CPU seconds (of the thread that ran it) spent sampling state / drawing live frames
_SPENT: dict[str, float] = {"sample": 0.0, "frames": 0.0, "view_setup": 0.0, "final": 0.0}
#: What the live line reports besides the common figures (from each run's view)
LIVE_KEYS = ("redraws", "blit_frame_cpu_ms", "redraw_cpu_ms", "blit_core_share",
             "redraw_core_share")  # fmt: skip
#: The notebook views of the runs (their frame counts and CPU by kind)
_VIEWS: list[Any] = []


def _instrument() -> None:
    """Count the CPU time of the sampler's samples and of the notebook view's frames (the
    load-independent figure: what they take from the engine's thread or the GIL)."""
    from ratelab.client.watch import notebook_view, sampler

    def timed(cls: Any, name: str, key: str) -> None:
        inner = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                _SPENT[key] += time.thread_time() - t
                if key == "final":  # the view, at the end of its run
                    _VIEWS.append(args[0])

        setattr(cls, name, wrapper)

    timed(sampler.StateSampler, "sample", "sample")
    timed(notebook_view.NotebookView, "update_to", "frames")
    timed(notebook_view.NotebookView, "__init__", "view_setup")
    timed(notebook_view.NotebookView, "close", "final")


def run_watch(
    url: str, n: int, strategy: rl.Strategy, *, live: bool | None = None, state: bool = True
) -> dict[str, Any]:
    """One ratelab run for the ``--watch`` lines: ``state`` on/off (a script's path), or
    ``live`` on/off (inside a running loop, the notebook view with a stub display)."""
    exp = rl.Experiment(target=url, requests=n, workers=WORKERS, strategy=strategy, seed=0)
    interval = 0.05 if state else None
    gc.collect()
    for key in _SPENT:
        _SPENT[key] = 0.0
    c, t = time.process_time(), time.perf_counter()
    frames: list[Any] = []
    if live is None:
        result = rl.run(exp, progress=False, state_interval_s=interval)
    else:
        import IPython.display

        import ratelab.client.watch.live as live_mod

        class Handle:
            def update(self, obj: Any) -> None:
                frames.append(obj)

        IPython.display.display = lambda obj, display_id=True: Handle()  # type: ignore[assignment]
        live_mod.in_kernel = lambda: True  # type: ignore[assignment]

        async def in_loop() -> rl.Result:  # as in a kernel: rl.run inside a running loop
            return rl.run(exp, progress=False, live=live, state_interval_s=interval)

        result = asyncio.run(in_loop())
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    images = [f for f in frames if type(f).__name__ == "Image"]
    view = _VIEWS.pop() if live else None
    _VIEWS.clear()
    wall_run = float(result.meta["wall_s"])
    return {
        "wall_s": wall,
        "rate_per_s": n / wall,
        "engine_rate_per_s": n / float(result.meta["wall_s"]),  # the run, not the figure after
        "cpu_us_per_request": cpu / n * 1e6,
        "ok": int(((result.df["status"] == 200) & result.df["error"].isna()).sum()),
        "state_rows": len(result.state),
        "frames": max(len(images) - 1, 0),  # the last image is the final figure
        "cpu_s": cpu,
        # the share of the run's CPU time spent sampling / drawing frames during the run
        "sample_cpu_share": _SPENT["sample"] / cpu,
        "frames_cpu_share": _SPENT["frames"] / (cpu - _SPENT["view_setup"] - _SPENT["final"]),
        "frame_cpu_ms": _SPENT["frames"] / max(len(images) - 1, 1) * 1e3,
        # CPU seconds per second of the run: the share of a core (of the GIL) taken
        "sample_core_share": _SPENT["sample"] / float(result.meta["wall_s"]),
        "frames_core_share": _SPENT["frames"] / float(result.meta["wall_s"]),
        # blitted frames (lines on the cached axes) and redrawn ones (the axes grew)
        "redraws": view.redraws if view else 0,
        "blit_frame_cpu_ms": view.cpu_s["blitted"] / max(view.frames - view.redraws, 1) * 1e3
        if view
        else 0.0,
        "redraw_cpu_ms": view.cpu_s["redrawn"] / max(view.redraws, 1) * 1e3 if view else 0.0,
        "blit_core_share": view.cpu_s["blitted"] / wall_run if view else 0.0,
        "redraw_core_share": view.cpu_s["redrawn"] / wall_run if view else 0.0,
        "view_setup_cpu_s": _SPENT["view_setup"],
        "final_figure_cpu_s": _SPENT["final"],
    }


def measure_watch(url: str, *, n: int, pairs: int, live: bool) -> dict[str, Any]:
    """Alternating pairs: watching on vs off (state sampling, or the live view)."""
    strategy = rl.ConnectionLimit(50)
    on_kw: dict[str, Any] = {"live": True} if live else {"state": True}
    off_kw: dict[str, Any] = {"live": False} if live else {"state": False}
    run_watch(url, max(n // 10, 50), strategy, **on_kw)
    run_watch(url, max(n // 10, 50), strategy, **off_kw)
    samples = []
    for i in range(pairs):
        if i % 2 == 0:
            off = run_watch(url, n, strategy, **off_kw)
            on = run_watch(url, n, strategy, **on_kw)
        else:
            on = run_watch(url, n, strategy, **on_kw)
            off = run_watch(url, n, strategy, **off_kw)
        samples.append(
            {
                "on": on,
                "off": off,
                "ratio": on["engine_rate_per_s"] / off["engine_rate_per_s"],
                "end_to_end_ratio": on["rate_per_s"] / off["rate_per_s"],
                "cpu_ratio": off["cpu_us_per_request"] / on["cpu_us_per_request"],
            }
        )
    return {
        "what": "live view" if live else "state sampling",
        "strategy": repr(strategy),
        "requests": n,
        "pairs": samples,
        "ratio": describe([s["ratio"] for s in samples]),
        "end_to_end_ratio": describe([s["end_to_end_ratio"] for s in samples]),
        "cpu_ratio": describe([s["cpu_ratio"] for s in samples]),
        "best_ratio": max(s["on"]["engine_rate_per_s"] for s in samples)
        / max(s["off"]["engine_rate_per_s"] for s in samples),
        "frames_per_s": describe(  # during the run (the engine's wall time)
            [s["on"]["frames"] * s["on"]["engine_rate_per_s"] / n for s in samples]
        ),
        "cpu_share": describe(
            [s["on"]["frames_cpu_share" if live else "sample_cpu_share"] for s in samples]
        ),
        "frame_cpu_ms": describe([s["on"]["frame_cpu_ms"] for s in samples]),
        "core_share": describe(
            [s["on"]["frames_core_share" if live else "sample_core_share"] for s in samples]
        ),
        "state_rows": describe([s["on"]["state_rows"] for s in samples]),
        **{key: describe([s["on"][key] for s in samples]) for key in (LIVE_KEYS if live else ())},
    }


def run_watch_report(*, n: int, pairs: int) -> dict[str, Any]:
    report: dict[str, Any] = {"benchmark": "overhead-watch", "requests": n, "workers": WORKERS}
    _instrument()
    with server_process("ratelab") as url:
        state = measure_watch(url, n=n, pairs=pairs, live=False)
        live = measure_watch(url, n=n, pairs=pairs, live=True)
    report["lines"] = {"state": state, "live": live}
    report["headline"] = [
        headline("state sampling on / off, ConnectionLimit(50)",
                 round(state["ratio"]["median"], 3), ">= 0.98"),
        headline("  best run / best run", round(state["best_ratio"], 3)),
        headline("live view on / off (in a running loop)", round(live["ratio"]["median"], 3),
                 ">= 0.97"),
        headline("  best run / best run", round(live["best_ratio"], 3)),
        headline("  end to end (+ the final figure)", round(live["end_to_end_ratio"]["median"], 3)),
        headline("state sampling: share of the run's CPU", round(state["cpu_share"]["median"], 4),
                 "< 0.02"),
        headline("live frames: share of the run's CPU", round(live["cpu_share"]["median"], 4),
                 "< 0.03"),
        headline("state sampling: share of a core", round(state["core_share"]["median"], 4)),
        headline("live frames: share of a core", round(live["core_share"]["median"], 4)),
        headline("  CPU per live frame (ms)", round(live["frame_cpu_ms"]["median"], 1)),
        headline("  live frames per second", round(live["frames_per_s"]["median"], 2)),
        headline("  blitted frame: CPU (ms)", round(live["blit_frame_cpu_ms"]["median"], 1)),
        headline("  blitted frames: share of a core",
                 round(live["blit_core_share"]["median"], 4)),
        headline("  redraws during a run", live["redraws"]["median"]),
        headline("  redraw: CPU (ms)", round(live["redraw_cpu_ms"]["median"], 1)),
    ]  # fmt: skip
    report["machine"] = machine_info()
    return report


def measure_line(
    url: str, *, n: int, pairs: int, strategy: rl.Strategy, bare_limit: int
) -> dict[str, Any]:
    """Warm up each client once, then ``pairs`` alternating pairs; ratios per pair."""
    run_bare(url, max(n // 10, 50), WORKERS, bare_limit)
    run_ratelab(url, max(n // 10, 50), WORKERS, strategy)
    samples = []
    for i in range(pairs):
        if i % 2 == 0:
            bare = run_bare(url, n, WORKERS, bare_limit)
            lab = run_ratelab(url, n, WORKERS, strategy)
        else:
            lab = run_ratelab(url, n, WORKERS, strategy)
            bare = run_bare(url, n, WORKERS, bare_limit)
        samples.append(
            {
                "order": "bare,ratelab" if i % 2 == 0 else "ratelab,bare",
                "bare": bare,
                "ratelab": lab,
                "ratio": lab["rate_per_s"] / bare["rate_per_s"],
                "engine_ratio": lab["engine_rate_per_s"] / bare["rate_per_s"],
                "cpu_ratio": bare["cpu_us_per_request"] / lab["cpu_us_per_request"],
            }
        )
    ratios = [s["ratio"] for s in samples]
    return {
        "strategy": repr(strategy),
        "bare_connector_limit": bare_limit,
        "requests": n,
        "workers": WORKERS,
        "pairs": samples,
        "ratio": describe(ratios),
        # robust to bursts of other load on the machine: each client's best run
        "best_ratio": max(s["ratelab"]["rate_per_s"] for s in samples)
        / max(s["bare"]["rate_per_s"] for s in samples),
        "engine_ratio": describe([s["engine_ratio"] for s in samples]),
        "cpu_ratio": describe([s["cpu_ratio"] for s in samples]),
        "bare_cpu_us_per_request": describe([s["bare"]["cpu_us_per_request"] for s in samples]),
        "ratelab_cpu_us_per_request": describe(
            [s["ratelab"]["cpu_us_per_request"] for s in samples]
        ),
        "bare_rate_per_s": describe([s["bare"]["rate_per_s"] for s in samples]),
        "ratelab_rate_per_s": describe([s["ratelab"]["rate_per_s"] for s in samples]),
        "all_ok": all(
            s["bare"]["ok"] == n and s["ratelab"]["ok"] == n and s["ratelab"]["rows"] == n
            for s in samples
        ),
    }


def run(*, n: int, pairs: int, native_s: float, servers: tuple[str, ...]) -> dict[str, Any]:
    report: dict[str, Any] = {"benchmark": "overhead", "requests": n, "workers": WORKERS}
    by_server: dict[str, Any] = {}
    for kind in servers:
        with server_process(kind) as url:
            lines = {
                "unlimited": measure_line(
                    url, n=n, pairs=pairs, strategy=rl.Unlimited(), bare_limit=0
                ),
                "connection_limit_50": measure_line(
                    url, n=n, pairs=pairs, strategy=rl.ConnectionLimit(50), bare_limit=50
                ),
            }
            native = native_rate(url + "/get", connections=WORKERS, duration_s=native_s)
            entry: dict[str, Any] = {"lines": lines, "native": native}
            if "rate_per_s" in native:
                for line in lines.values():
                    line["bare_over_native"] = (
                        line["bare_rate_per_s"]["median"] / native["rate_per_s"]
                    )
                    line["ratelab_over_native"] = (
                        line["ratelab_rate_per_s"]["median"] / native["rate_per_s"]
                    )
            by_server[kind] = entry
    report["servers"] = by_server
    main_line = by_server[servers[0]]["lines"]
    report["ratio_unlimited"] = main_line["unlimited"]["ratio"]["median"]
    report["ratio_connection_limit_50"] = main_line["connection_limit_50"]["ratio"]["median"]
    report["headline"] = _headline(report, servers)
    report["machine"] = machine_info()
    return report


def _headline(report: dict[str, Any], servers: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for kind in servers:
        entry = report["servers"][kind]
        for line in entry["lines"].values():
            metric = f"{line['strategy']} / bare, {kind} server"
            rows.append(headline(metric, round(line["ratio"]["median"], 3), ">= 0.90"))
            rows.append(headline("  best run / best run", round(line["best_ratio"], 3)))
        line = entry["lines"]["unlimited"]
        if "bare_over_native" in line:
            tool = entry["native"]["tool"]
            rows.append(
                headline(f"bare / {tool}, {kind} server", round(line["bare_over_native"], 3))
            )
            rows.append(
                headline(
                    f"Unlimited() / {tool}, {kind} server", round(line["ratelab_over_native"], 3)
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=None, help="requests per run")
    p.add_argument("--pairs", type=int, default=None, help="bare/ratelab pairs per line")
    p.add_argument("--servers", default="ratelab,minimal", help="comma-separated: ratelab, minimal")
    p.add_argument("--watch", action="store_true", help="the cost of state sampling and live=True")
    args = p.parse_args(argv)
    n = args.requests or (200 if args.smoke else 20_000)
    pairs = args.pairs or (1 if args.smoke else 7)
    servers = tuple(s for s in args.servers.split(",") if s)
    if args.watch:
        report = run_watch_report(n=n, pairs=pairs)
        report["smoke"] = args.smoke
        for row in report["headline"]:
            print(f"{row['metric']:<45} {row['value']}")
        for line in report["lines"].values():
            print(f"  {line['what']:<16} ratios {[round(s['ratio'], 3) for s in line['pairs']]}")
        write_report(report, default_out("overhead-watch", args))
        return 0
    report = run(n=n, pairs=pairs, native_s=1 if args.smoke else 3, servers=servers)
    report["smoke"] = args.smoke
    for row in report["headline"]:
        print(f"{row['metric']:<45} {row['value']}")
    for kind, entry in report["servers"].items():
        for name, line in entry["lines"].items():
            print(
                f"  {kind:<8} {name:<20} bare {line['bare_rate_per_s']['median']:8.0f}/s  "
                f"ratelab {line['ratelab_rate_per_s']['median']:8.0f}/s  "
                f"ratios {[round(s['ratio'], 3) for s in line['pairs']]}"
            )
        if "rate_per_s" in entry["native"]:
            print(f"  {kind:<8} native {entry['native']['rate_per_s']:.0f}/s")
    write_report(report, default_out("overhead", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
