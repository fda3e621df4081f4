"""Benchmark ratelab.analysis.metrics on a large synthetic records frame.

    python benchmarks/bench_analysis.py [--rows N] [--out benchmarks/results/analysis.json]

Builds N rows (default 1,000,000) with the dtypes of ``ratelab.records.schema.empty_frame()``,
times ``summary``, ``throughput``, ``concurrency`` and ``windows`` (median of 3 runs) beside
a bare numpy kernel doing the same core computation on pre-extracted arrays, prints the
ratio of each to its kernel and the frame's bytes per row, and saves everything as JSON
with the machine's details.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ratelab.analysis import metrics as analysis  # noqa: E402
from ratelab.records.schema import empty_frame  # noqa: E402

REPEATS = 3


def synthetic_frame(n: int, *, seed: int = 0) -> pd.DataFrame:
    """``n`` plausible attempts: 50 workers, ~2000 requests/s, some waits, errors, retries."""
    rng = np.random.default_rng(seed)
    retry = rng.random(n) < 0.02  # these rows are second attempts of the previous request
    retry[0] = False
    request_id = np.cumsum(~retry) - 1
    attempt = np.where(retry, 2, 1).astype(np.int16)
    scheduled = np.sort(rng.uniform(0.0, n / 2000.0, n))
    dequeued = scheduled + rng.exponential(0.01, n)
    ready = dequeued + rng.exponential(0.005, n)
    admitted = ready + np.where(rng.random(n) < 0.5, rng.exponential(0.02, n), 0.0)
    waited = rng.random(n) < 0.3
    pool_queued = np.where(waited, admitted, np.nan)
    pool_acquired = np.where(waited, admitted + rng.exponential(0.01, n), np.nan)
    sent = np.where(waited, pool_acquired, admitted)
    lat = rng.lognormal(np.log(0.02), 0.5, n)
    headers = sent + 0.8 * lat
    done = sent + lat
    status = np.full(n, 200, np.int16)
    status[rng.random(n) < 0.01] = 500
    err_codes = np.full(n, -1, np.int32)
    timeouts = rng.random(n) < 0.01
    err_codes[timeouts] = 0
    status[timeouts] = 0
    headers[timeouts] = np.nan
    cancelled = np.zeros(n, bool)
    cancelled[-max(1, n // 1000) :] = True  # the run was interrupted near the end
    err_codes[cancelled] = 1
    status[cancelled] = 0
    times = {
        "scheduled_s": scheduled,
        "dequeued_s": dequeued,
        "ready_s": ready,
        "admitted_s": admitted,
        "pool_queued_s": pool_queued,
        "pool_acquired_s": pool_acquired,
        "sent_s": sent,
        "headers_s": headers,
        "done_s": done,
    }
    for name, col in times.items():
        if name != "scheduled_s":
            col[cancelled] = np.nan
    worker = rng.integers(0, 50, n).astype(np.int32)
    worker[cancelled] = -1
    df = pd.DataFrame(
        {
            "request_id": request_id.astype(np.int64),
            "attempt": attempt,
            "worker": worker,
            "endpoint": pd.Categorical.from_codes(
                rng.integers(0, 2, n).astype(np.int32), categories=["/get", "/slow"]
            ),
            "method": pd.Categorical.from_codes(np.zeros(n, np.int32), categories=["GET"]),
            **times,
            "status": status,
            "error": pd.Categorical.from_codes(
                err_codes, categories=["TimeoutError", "CancelledError"]
            ),
            "bytes": np.where(status == 200, 256, 0).astype(np.int64),
            "cost": np.full(n, np.nan),  # no costs (a run without Experiment(cost=))
        }
    )
    ref = empty_frame()
    assert list(df.columns) == list(ref.columns), "columns differ from the schema"
    assert list(df.dtypes.astype(str)) == list(ref.dtypes.astype(str)), "dtypes differ"
    return df


# ----------------------------------------------------------------- bare numpy kernels


def _step(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.concatenate((ends, starts))
    d = np.concatenate((np.full(ends.size, -1, np.int64), np.ones(starts.size, np.int64)))
    o = np.argsort(t, kind="stable")
    return t[o], np.cumsum(d[o])


def kernel_throughput(a: dict[str, np.ndarray], window_s: float = 1.0) -> Any:
    sent = a["sent_s"][np.isfinite(a["sent_s"])]
    done = a["done_s"][np.isfinite(a["done_s"])]
    n = int(max(sent.max(), done.max()) // window_s) + 1
    return (
        np.bincount((sent // window_s).astype(np.int64), minlength=n),
        np.bincount((done // window_s).astype(np.int64), minlength=n),
    )


def kernel_concurrency(a: dict[str, np.ndarray]) -> Any:
    done = a["done_s"]
    ts, ds, ks = [], [], []
    for i, (s, e) in enumerate(
        (("ready_s", "admitted_s"), ("pool_queued_s", "pool_acquired_s"), ("sent_s", "done_s"))
    ):
        start, end = a[s], a[e] if e == "done_s" else np.where(np.isnan(a[e]), done, a[e])
        m = np.isfinite(start) & np.isfinite(end)
        t = np.concatenate((end[m], start[m]))
        d = np.concatenate((np.full(m.sum(), -1, np.int8), np.ones(m.sum(), np.int8)))
        o = np.argsort(t, kind="stable")
        ts.append(t[o])
        ds.append(d[o])
        ks.append(np.full(t.size, i, np.int8))
    t = np.concatenate(ts)
    o = np.argsort(t, kind="stable")
    t, d, k = t[o], np.concatenate(ds)[o], np.concatenate(ks)[o]
    last = np.ones(t.size, bool)
    last[:-1] = t[1:] != t[:-1]
    return t[last], [np.cumsum(np.where(k == i, d, 0), dtype=np.int64)[last] for i in range(3)]


def kernel_windows(a: dict[str, np.ndarray], window_s: float = 1.0) -> Any:
    s = np.sort(a["sent_s"][np.isfinite(a["sent_s"])])
    c = np.searchsorted(s, s + window_s, side="left") - np.arange(s.size)
    return int(c.max())


def kernel_summary(a: dict[str, np.ndarray], window_s: float = 1.0) -> Any:
    """The same core numbers as summary(), straight on arrays (no frame, no dict output)."""
    ok = (a["error"] < 0) & (a["status"] >= 200) & (a["status"] < 400)
    requests = np.count_nonzero(np.bincount(a["request_id"]))  # ids are 0-based
    kinds = np.bincount(a["error"][~ok] + 1)
    sent, done = a["sent_s"], a["done_s"]
    m = np.isfinite(sent) & np.isfinite(done)
    lat = done[m] - sent[m]
    ev, lv = _step(sent[m], done[m])
    t0, t1 = np.nanmin(a["scheduled_s"]), np.nanmax(done)
    edges = np.clip(np.append(ev, t1), t0, t1)
    mean_fl = np.dot(lv, np.diff(edges)) / (t1 - t0)
    q = np.quantile(lat, [0.5, 0.9, 0.99])
    d = np.sort(done[np.isfinite(done)])
    lim = a["admitted_s"] - a["ready_s"]
    lim = lim[np.isfinite(lim)]
    pool = np.nan_to_num(a["pool_acquired_s"] - a["pool_queued_s"])[np.isfinite(sent)]
    return (requests, kinds, lv.max(), mean_fl, q, d.size, lim.mean(), lim.max(), pool.mean(),
            pool.max(), kernel_windows(a, window_s))  # fmt: skip


# ----------------------------------------------------------------- timing


def median_time(fn: Callable[[], Any], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "cpu_count": os.cpu_count(),
    }


def run(rows: int) -> dict[str, Any]:
    t = time.perf_counter()
    df = synthetic_frame(rows)
    build_s = time.perf_counter() - t
    arrays = {c: df[c].to_numpy() for c in df.columns if df[c].dtype != "category"}
    arrays["error"] = df["error"].cat.codes.to_numpy()
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "summary": (lambda: analysis.summary(df), lambda: kernel_summary(arrays)),
        "throughput": (lambda: analysis.throughput(df), lambda: kernel_throughput(arrays)),
        "concurrency": (lambda: analysis.concurrency(df), lambda: kernel_concurrency(arrays)),
        "windows": (lambda: analysis.windows(df), lambda: kernel_windows(arrays)),
    }
    results: dict[str, dict[str, float]] = {}
    for name, (fn, kernel) in cases.items():
        fn_s = median_time(fn)
        k_s = median_time(kernel)
        results[name] = {"seconds": fn_s, "kernel_seconds": k_s, "ratio": fn_s / k_s}
    return {
        "rows": rows,
        "repeats": REPEATS,
        "build_frame_s": build_s,
        "bytes_per_row": float(df.memory_usage(deep=True).sum() / len(df)),
        "total_s": sum(r["seconds"] for r in results.values()),
        "results": results,
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the synthetic frame")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.rows < 10:
        p.error("--rows must be >= 10")
    report = run(args.rows)
    print(f"{report['rows']:,} rows, {report['bytes_per_row']:.1f} bytes/row "
          f"(frame built in {report['build_frame_s']:.2f} s), median of {REPEATS}")  # fmt: skip
    print(f"{'function':<12} {'ratelab s':>10} {'numpy s':>10} {'ratio':>7}")
    for name, r in report["results"].items():
        print(f"{name:<12} {r['seconds']:>10.4f} {r['kernel_seconds']:>10.4f} {r['ratio']:>7.2f}")
    print(f"{'total':<12} {report['total_s']:>10.4f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
