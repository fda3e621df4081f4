"""ratelab.analysis.metrics on hand-built frames with exact expected numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ratelab.analysis import metrics as analysis
from ratelab.analysis.metrics import (
    WindowStats,
    concurrency,
    phase_means,
    summary,
    throughput,
    time_weighted_mean,
    windows,
)
from ratelab.analysis.result import Result
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.strategies import ConnectionLimit, RateLimit
from ratelab.records.schema import empty_frame
from ratelab.testing import make_frame

ROOT = Path(__file__).resolve().parents[2]
NAN = math.nan


def intervals(starts: list[float], ends: list[float], **more: object) -> pd.DataFrame:
    """A frame whose attempts are in flight over ``[start, end)`` (scheduled at 0)."""
    n = len(starts)
    return make_frame(scheduled_s=[0.0] * n, sent_s=starts, done_s=ends, **more)


def result(df: pd.DataFrame, **kw: object) -> Result:
    exp = Experiment(
        target="http://127.0.0.1:1", strategy=RateLimit(20) + ConnectionLimit(10), **kw
    )
    return Result(df=df, experiment=exp)


# ------------------------------------------------------------------ throughput


@pytest.mark.parametrize(
    ("duration_s", "window_s"),
    [(0.3, 0.02), (1.2, 0.05), (2.5, 0.1), (5.0, 0.2), (10.0, 0.5), (20.0, 1.0), (25.0, 1.0),
     (26.0, 2.0), (60.0, 5.0), (3600.0, 200.0), (0.0, 1.0), (NAN, 1.0)],
)  # fmt: skip
def test_auto_window_s_gives_at_most_25_nice_bins(duration_s: float, window_s: float) -> None:
    assert analysis.auto_window_s(duration_s) == window_s
    if duration_s > 0:
        assert duration_s / window_s <= 25


def test_auto_window_s_keeps_a_few_events_per_bin() -> None:
    # 50 requests at 5/s over 10 s: 0.5 s bins hold 2 or 3 (a 4, 6, 4, 6 saw-tooth)
    assert analysis.auto_window_s(10.0) == 0.5
    assert analysis.auto_window_s(10.0, events=50) == 1.0  # 5 per bin: a flat 5/s
    assert analysis.auto_window_s(1.2, events=1000) == 0.05  # many events: length decides
    assert analysis.auto_window_s(1.2, events=2) == 2.0  # one bin for the whole run


def test_throughput_bin_counts() -> None:
    df = intervals([0.1, 0.2, 1.5, 2.9], [0.5, 1.2, 1.7, 3.0])
    tp = throughput(df)
    assert list(tp.columns) == ["t_s", "sent_per_s", "done_per_s"]
    assert tp["t_s"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert tp["sent_per_s"].tolist() == [2, 1, 1, 0]
    assert tp["done_per_s"].tolist() == [1, 2, 0, 1]


def test_throughput_window_scales_to_per_second() -> None:
    df = intervals([0.1, 0.2, 0.6], [0.3, 0.4, 0.7])
    tp = throughput(df, window_s=0.5)
    assert tp["t_s"].tolist() == [0.0, 0.5]
    assert tp["sent_per_s"].tolist() == [4.0, 2.0]  # 2 and 1 per half second
    assert tp["done_per_s"].tolist() == [4.0, 2.0]


def test_throughput_ignores_nan_and_takes_a_result() -> None:
    df = intervals([0.5, NAN], [1.5, NAN])
    tp = throughput(result(df))
    assert tp["sent_per_s"].tolist() == [1, 0]
    assert tp["done_per_s"].tolist() == [0, 1]
    assert len(throughput(empty_frame())) == 0
    with pytest.raises(ValueError, match="window_s"):
        throughput(df, window_s=0)


# ------------------------------------------------------------------ concurrency


def test_concurrency_three_overlapping_intervals() -> None:
    c = concurrency(intervals([0.0, 1.0, 1.5], [2.0, 3.0, 2.5]))
    assert list(c.columns) == ["t_s", "waiting_limiter", "waiting_pool", "in_flight"]
    assert c["t_s"].tolist() == [0.0, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert c["in_flight"].tolist() == [1, 2, 3, 2, 1, 0]
    assert c["in_flight"].max() == 3
    assert (c["waiting_limiter"] == 0).all() and (c["waiting_pool"] == 0).all()


def test_concurrency_end_equal_to_start_is_not_overlap() -> None:
    c = concurrency(intervals([0.0, 1.0, 1.0], [1.0, 2.0, 1.0]))  # last is zero-length
    assert c["t_s"].tolist() == [0.0, 1.0, 2.0]
    assert c["in_flight"].tolist() == [1, 1, 0]
    assert c["in_flight"].max() == 1


def test_concurrency_waits_and_failed_waits_end_at_done() -> None:
    df = make_frame(
        ready_s=[0.0, 0.0, 0.5],
        admitted_s=[1.0, NAN, 0.5],  # row 1 failed while waiting for the limiter, at 2.0
        pool_queued_s=[1.0, NAN, 0.5],
        pool_acquired_s=[1.5, NAN, 0.75],
        sent_s=[1.5, NAN, 0.75],
        done_s=[2.5, 2.0, 1.0],
        status=[200, 0, 200],
        error=[None, "TimeoutError", None],
    )
    c = concurrency(df).set_index("t_s")
    assert c.index.tolist() == [0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5]
    assert c["waiting_limiter"].tolist() == [2, 2, 2, 1, 1, 0, 0]
    assert c["waiting_pool"].tolist() == [0, 1, 0, 1, 0, 0, 0]
    assert c["in_flight"].tolist() == [0, 0, 1, 0, 1, 1, 0]


def test_time_weighted_mean() -> None:
    t, v = [0.0, 1.0, 2.0], [1, 3, 0]
    assert time_weighted_mean(t, v, 0.0, 4.0) == 1.0  # (1 + 3 + 0) / 4
    assert time_weighted_mean(t, v, 0.5, 1.5) == 2.0
    assert time_weighted_mean(t, v, -1.0, 1.0) == 0.5  # 0 before the first step
    assert math.isnan(time_weighted_mean(t, v, 1.0, 1.0))
    assert time_weighted_mean([], [], 0.0, 1.0) == 0.0


# ------------------------------------------------------------------ windows


def burst_then_drip() -> np.ndarray:
    """Sent times of a fresh AsyncLimiter(20, 1): 20 at t=0, then one every 50 ms."""
    return np.concatenate((np.zeros(20), np.arange(1, 41) * 0.05))


def test_windows_leaky_bucket_burst() -> None:
    sent = burst_then_drip()
    w = windows(intervals(list(sent), list(sent + 0.01)), limit=20)
    assert isinstance(w, WindowStats)
    assert w.max_sent == 39  # 20 at 0 + 0.05 .. 0.95; the one at exactly 1.0 is outside
    assert w.t_s == 0.0 and w.window_s == 1.0
    assert w.complied is False
    assert "39 sent in [0, 1) s" in str(w) and "exceeds" in str(w)


def test_windows_burst_free_limiter() -> None:
    sent = np.arange(60) * 0.05  # AsyncLimiter(1, 0.05): one every 50 ms from t=0
    w = windows(intervals(list(sent), list(sent + 0.01)), limit=20)
    assert w.max_sent == 20
    assert w.t_s == 0.0
    assert w.complied is True
    assert windows(intervals(list(sent), list(sent + 0.01)), limit=19).complied is False
    assert windows(intervals(list(sent), list(sent)), window_s=0.5).max_sent == 10


def test_windows_without_limit_and_empty() -> None:
    w = windows(intervals([0.0, 0.2, 5.0], [1.0, 1.0, 6.0]))
    assert (w.max_sent, w.t_s, w.limit, w.complied) == (2, 0.0, None, None)
    e = windows(empty_frame(), limit=3)
    assert e.max_sent == 0 and e.complied is True and math.isnan(e.t_s)


# ------------------------------------------------------------------ summary


def summary_frame() -> pd.DataFrame:
    #        ok    ok    500   timeout  retry ok  cancelled  404
    return make_frame(
        request_id=[0, 1, 2, 3, 3, 4, 5],
        attempt=[1, 1, 1, 1, 2, 1, 1],
        scheduled_s=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        dequeued_s=[0.0, 0.0, 0.5, 1.0, 5.0, NAN, 0.0],
        ready_s=[0.0, 0.0, 0.5, 1.0, 5.0, NAN, 0.0],
        admitted_s=[0.0, 0.0, 1.0, 2.0, 5.5, NAN, 0.0],
        pool_queued_s=[NAN, NAN, NAN, NAN, 5.5, NAN, NAN],
        pool_acquired_s=[NAN, NAN, NAN, NAN, 6.0, NAN, NAN],
        sent_s=[0.0, 0.0, 1.0, 2.0, 6.0, NAN, NAN],
        done_s=[1.0, 2.0, 4.0, 6.0, 11.0, NAN, 0.0],  # the 404 ends at 0 with no latency
        status=[200, 200, 500, 0, 200, 0, 404],
        error=[None, None, None, "TimeoutError", None, "CancelledError", None],
    )


def test_summary_counts_and_errors() -> None:
    s = summary(summary_frame())
    assert s.index.tolist() == ["run"] and s.index.name == "label"
    assert list(s.columns) == list(analysis.SUMMARY_COLUMNS)
    row = s.loc["run"]
    assert row["requests"] == 6
    assert row["attempts"] == 7
    assert row["ok"] == 3
    assert row["errors"] == 4
    assert row["errors_by_kind"] == {
        "CancelledError": 1,
        "HTTP 404": 1,
        "HTTP 500": 1,
        "TimeoutError": 1,
    }


def test_summary_times_latency_and_waits() -> None:
    row = summary(summary_frame()).loc["run"]
    assert row["duration_s"] == 11.0
    assert row["rate_per_s"] == pytest.approx(6 / 11)  # six attempts ended (NaN one did not)
    # latencies 1, 2, 3, 4, 5 s
    assert row["latency_p50_s"] == pytest.approx(3.0)
    assert row["latency_p90_s"] == pytest.approx(4.6)
    assert row["latency_p99_s"] == pytest.approx(4.96)
    # limiter waits 0, 0, 0.5, 1, 0.5, 0 s; pool waits 0, 0, 0, 0, 0.5 over the sent rows
    assert row["limiter_wait_mean_s"] == pytest.approx(2.0 / 6)
    assert row["limiter_wait_max_s"] == 1.0
    assert row["pool_wait_mean_s"] == pytest.approx(0.1)
    assert row["pool_wait_max_s"] == 0.5
    assert row["peak_in_flight"] == 2
    assert row["max_sent_1s"] == 2
    assert row["mean_in_flight"] == pytest.approx(15 / 11)  # 1+2+3+4+5 s over 11 s
    assert row["littles_law_in_flight"] == pytest.approx(15 / 11)
    assert row["littles_law_ratio"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("window_s", "column", "busiest"),
    [
        (1.0, "max_sent_1s", 2),
        (0.5, "max_sent_0.5s", 2),
        (2.5, "max_sent_2.5s", 4),
        (3, "max_sent_3s", 4),
    ],
)
def test_summary_names_the_busiest_window_after_its_length(
    window_s: float, column: str, busiest: int
) -> None:
    """sent at 0, 0, 1, 2, 6 s: two in any 1 s or 0.5 s window, four in [0, 2.5) or [0, 3)."""
    s = summary(summary_frame(), window_s=window_s)
    assert analysis.max_sent_column(window_s) == column
    assert list(s.columns) == list(analysis.summary_columns(window_s=window_s))
    assert column in s.columns and s.loc["run", column] == busiest
    others = [c for c in s.columns if c.startswith("max_sent_") and c != column]
    assert not others  # no column claims another window
    assert analysis.summary_columns() == analysis.SUMMARY_COLUMNS


def test_summary_littles_law_by_hand() -> None:
    # In flight [0,2), [1,3), [1.5,2.5) after scheduling at -1: area 2+2+1 = 5 over 4 s.
    df = make_frame(scheduled_s=[-1.0, -1.0, -1.0], sent_s=[0.0, 1.0, 1.5],
                    done_s=[2.0, 3.0, 2.5])  # fmt: skip
    row = summary(df).loc["run"]
    assert row["duration_s"] == 4.0
    assert row["mean_in_flight"] == 5 / 4
    assert row["peak_in_flight"] == 3
    # throughput 3/4 per s x mean latency 5/3 s = 5/4
    assert abs(row["littles_law_in_flight"] - 5 / 4) < 1e-12
    assert abs(row["littles_law_ratio"] - 1.0) < 1e-9


def _aiolimiter_frame(n: int, *, rate: float = 20.0, latency_s: float = 0.1) -> pd.DataFrame:
    """A closed loop behind a fresh ``AsyncLimiter(rate, 1)``: ``rate`` requests at 0 (the
    full bucket), then one every ``1 / rate`` s, each done ``latency_s`` later."""
    sent = np.concatenate((np.zeros(int(rate)), np.arange(1, n - int(rate) + 1) / rate))
    return intervals(list(sent), list(sent + latency_s))


def test_steady_rate_leaves_out_the_first_period_of_the_rate_limit() -> None:
    # 100 requests: 20 at once, then 80 at 20/s. The old definition (the middle 80% of
    # completions) still held 10 of the burst's: 22.4/s. After the first period: 20/s.
    df = _aiolimiter_frame(100)
    assert summary(df, burst_s=1.0).loc["run", "steady_rate_per_s"] == pytest.approx(20.0)
    # a Result's strategy says how long its burst can last: RateLimit(20) -> 1 s
    res = result(df)
    assert summary(res).iloc[0]["steady_rate_per_s"] == pytest.approx(20.0)
    # a bare frame has no strategy: nothing is left out, and the burst shows
    assert summary(df).loc["run", "steady_rate_per_s"] > 21.5


def test_steady_rate_is_nan_when_the_run_never_leaves_its_burst() -> None:
    df = _aiolimiter_frame(39)  # all 39 sent within the first second
    assert math.isnan(summary(df, burst_s=1.0).loc["run", "steady_rate_per_s"])


def test_steady_rate_counts_completions_after_the_burst_not_before() -> None:
    # latency 2 s: the burst's completions land after the first period, but they were
    # sent in it, so they are still left out
    df = _aiolimiter_frame(100, latency_s=2.0)
    assert summary(df, burst_s=1.0).loc["run", "steady_rate_per_s"] == pytest.approx(20.0)


def test_steady_rate_of_batches_is_the_batch_rate() -> None:
    # a cap of 10 and 1 s of latency: 10 completions at once every second -> 10/s
    # ((count - 1) / span would read 29 / 2 = 14.5 for three batches)
    sent = np.repeat([1.0, 2.0, 3.0], 10)
    df = intervals(list(sent), list(sent + 1.0))
    assert summary(df).loc["run", "steady_rate_per_s"] == pytest.approx(10.0)


def test_strategy_burst_s_reads_each_rate_limit_s_first_period() -> None:
    from ratelab.experiment.strategies import (
        Concurrency,
        SlidingWindow,
        TokenBucket,
        Unlimited,
    )

    burst = analysis.strategy_burst_s
    assert burst(RateLimit(20)) == 1.0
    assert burst(RateLimit(1, period_s=0.05) + ConnectionLimit(10)) == 0.05
    assert burst(RateLimit(20) + RateLimit(100, period_s=60)) == 60.0  # the longest
    assert burst(TokenBucket(20, burst=10)) == 0.5
    assert burst(SlidingWindow(20, window_s=2)) == 2.0
    assert burst(Unlimited()) == burst(Concurrency(5)) == burst(None) == 0.0


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan, "1"])
def test_summary_refuses_a_bad_burst_s(bad: object) -> None:
    from ratelab.errors import ConfigError

    with pytest.raises(ConfigError, match="burst_s"):
        summary(_aiolimiter_frame(40), burst_s=bad)  # type: ignore[arg-type]


def test_summary_of_results() -> None:
    a = result(intervals([0.0, 1.0], [1.0, 2.0]), workers=4)
    b = result(intervals([0.0], [0.5]), name="other")
    s = summary([a, b])
    assert s.index.tolist() == ["RateLimit(20) + ConnectionLimit(10)", "other"]
    assert list(s.columns[:2]) == ["strategy", "workers"]
    assert s["strategy"].tolist() == ["RateLimit(20) + ConnectionLimit(10)"] * 2
    assert s["workers"].tolist() == [4, 10]
    assert s["attempts"].tolist() == [2, 1]
    assert summary(a).index.tolist() == [a.label]


def test_summary_of_an_empty_frame() -> None:
    row = summary(empty_frame()).loc["run"]
    assert row["attempts"] == 0 and row["errors_by_kind"] == {}
    assert math.isnan(row["duration_s"]) and math.isnan(row["latency_p50_s"])


def test_phase_means() -> None:
    df = make_frame(
        attempt=[1, 2],
        scheduled_s=[0.0, 0.0],
        dequeued_s=[1.0, 4.0],
        ready_s=[1.5, 4.0],
        admitted_s=[2.0, 4.0],
        pool_queued_s=[2.0, NAN],
        pool_acquired_s=[3.0, NAN],
        sent_s=[3.0, 4.0],
        done_s=[4.0, 7.0],
    )
    pm = phase_means(df).loc["run"]
    assert pm["queue_s"] == 1.0  # first attempts only
    assert pm["think_s"] == 0.25
    assert pm["limiter_s"] == 0.25
    assert pm["pool_s"] == 0.5
    assert pm["server_s"] == 2.0


def test_rejects_other_inputs() -> None:
    with pytest.raises(TypeError):
        throughput([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        summary(42)


# ------------------------------------------------------------------ benchmark smoke


def test_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "analysis.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_analysis.py"), "--rows", "2000",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["rows"] == 2000
    assert report["bytes_per_row"] > 0
    assert set(report["results"]) == {"summary", "throughput", "concurrency", "windows"}
    for r in report["results"].values():
        assert {"seconds", "kernel_seconds", "ratio"} <= set(r)
    assert {"platform", "python", "numpy", "pandas", "cpu_count"} <= set(report["machine"])


def test_steady_rate_of_a_simulated_rate_limit_is_its_rate() -> None:
    # aiolimiter itself on the virtual clock: RateLimit(20) reads 20/s, not 22-28/s
    import ratelab as rl

    server = rl.LocalServer(latency=0.1, seed=1)
    for n in (60, 100, 200):
        exp = Experiment(target="http://127.0.0.1:1", requests=n, workers=20, seed=1,
                         strategy=RateLimit(20) + ConnectionLimit(10))  # fmt: skip
        row = summary(rl.simulate(exp, server, progress=False)).iloc[0]
        assert row["steady_rate_per_s"] == pytest.approx(20.0, rel=0.01)
        assert row["max_sent_1s"] == 39  # the burst is there; it is just not "steady"
