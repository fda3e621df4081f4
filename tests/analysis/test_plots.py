"""ratelab.analysis.plots checked through the artists it draws."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math
from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ratelab.analysis import plots
from ratelab.analysis.result import Result
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.strategies import Concurrency, ConnectionLimit, RateLimit, Strategy
from ratelab.testing import make_frame

NAN = math.nan


def timeline_frame() -> pd.DataFrame:
    """Five attempts on two workers; phases: think 2, limiter 2, pool 1, in flight 4."""
    return make_frame(
        worker=[0, 1, 0, 1, -1],
        scheduled_s=[0.0, 0.0, 0.0, 0.0, 0.0],
        dequeued_s=[0.0, 0.0, 1.0, 2.0, NAN],
        ready_s=[0.1, 0.0, 1.2, 2.0, NAN],
        admitted_s=[0.1, 0.5, 1.2, NAN, NAN],  # row 3 timed out in the limiter
        pool_queued_s=[NAN, 0.5, NAN, NAN, NAN],
        pool_acquired_s=[NAN, 0.7, NAN, NAN, NAN],
        sent_s=[0.1, 0.7, 1.5, NAN, NAN],
        done_s=[0.9, 2.0, 1.9, 3.0, NAN],
        status=[200, 500, 200, 0, 0],
        error=[None, None, None, "TimeoutError", "CancelledError"],
    )


def run_frame(n: int = 40, *, latency: float = 0.25, gap: float = 0.0625) -> pd.DataFrame:
    sent = np.arange(n) * gap
    return make_frame(
        worker=np.arange(n) % 4,
        scheduled_s=np.zeros(n),
        dequeued_s=sent,
        ready_s=sent,
        admitted_s=sent,
        sent_s=sent,
        done_s=sent + latency,
    )


def result(df: pd.DataFrame, strategy: Strategy | None = None, **kw: object) -> Result:
    exp = Experiment(
        target="http://127.0.0.1:1",
        strategy=strategy if strategy is not None else RateLimit(20) + ConnectionLimit(10),
        **kw,
    )
    return Result(df=df, experiment=exp)


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def by_gid(ax: Axes, gid: str) -> list:
    return [a for a in (*ax.lines, *ax.collections, *ax.patches) if a.get_gid() == gid]


def run_lines(ax: Axes) -> list[Line2D]:
    return [ln for ln in ax.lines if ln.get_gid() == "run"]


def has_unit(label: str) -> bool:
    return "(" in label and ")" in label


# ------------------------------------------------------------------ timeline


def test_timeline_bars_per_phase() -> None:
    _fig, ax = plt.subplots()
    out = plots.plot_timeline(timeline_frame(), ax=ax)
    assert out is ax
    counts = {}
    for phase in ("think", "limiter", "pool", "in_flight"):
        (col,) = by_gid(ax, phase)
        assert isinstance(col, PolyCollection)
        assert col.get_label() == plots.PHASE_LABELS[phase]
        counts[phase] = len(col.get_paths())
    # think: rows 0, 2; limiter: rows 1 and 3 (ended by its failure at done); pool: row 1
    assert counts == {"think": 2, "limiter": 2, "pool": 1, "in_flight": 3}
    (flight,) = by_gid(ax, "in_flight")
    verts = flight.get_paths()[1].vertices  # row 1: worker 1, 0.7 -> 2.0
    assert verts[:, 0].min() == 0.7 and verts[:, 0].max() == 2.0
    assert verts[:, 1].min() == pytest.approx(0.6) and verts[:, 1].max() == pytest.approx(1.4)
    (failed,) = by_gid(ax, "failed")
    assert sorted(failed.get_xdata()) == [2.0, 3.0]  # the 500 and the timeout
    assert ax.get_legend() is not None
    assert has_unit(ax.get_xlabel()) and "worker" in ax.get_ylabel()


def test_timeline_marks_retries_where_they_start() -> None:
    df = make_frame(
        request_id=[0, 0, 0, 1],
        attempt=[1, 2, 3, 1],
        worker=[0, 0, 0, 1],
        dequeued_s=[0.0, 1.0, 2.5, 0.0],
        ready_s=[0.0, 1.2, 2.9, 0.0],
        admitted_s=[0.0, 1.2, 2.9, 0.0],
        sent_s=[0.0, 1.2, 2.9, 0.0],
        done_s=[1.0, 2.5, 3.0, 0.5],
        status=[503, 503, 200, 200],
    )
    ax = plots.plot_timeline(df)
    (retry,) = by_gid(ax, "retry")
    assert list(retry.get_xdata()) == [1.2, 2.9] and list(retry.get_ydata()) == [0, 0]
    assert retry.get_label() == "retry (2)"
    (failed,) = by_gid(ax, "failed")
    assert sorted(failed.get_xdata()) == [1.0, 2.5]


def test_timeline_max_requests() -> None:
    ax = plots.plot_timeline(run_frame(10), max_requests=3)
    (flight,) = by_gid(ax, "in_flight")
    assert len(flight.get_paths()) == 3
    assert "first 3 of 10" in ax.get_title()
    assert isinstance(ax, Axes)


# ------------------------------------------------------------------ throughput


def test_throughput_rate_limit_line() -> None:
    r = result(run_frame())
    _fig, ax = plt.subplots()
    assert plots.plot_throughput(r, ax=ax, window_s=1.0) is ax
    (rate,) = by_gid(ax, "rate_limit")
    assert list(rate.get_ydata()) == [20.0, 20.0]
    assert rate.get_label() == "rate limit 20/s"
    assert rate.get_linestyle() == "--"
    (line,) = run_lines(ax)
    assert line.get_label() == r.label
    # 40 sent every 62.5 ms, done 250 ms later: 12 done in [0, 1), 16 in [1, 2), 12 after
    assert list(line.get_ydata()) == [12, 16, 12, 12]
    assert ax.get_ylabel() == "completed (req/s, 1 s bins)" and "(s)" in ax.get_xlabel()


def test_a_run_split_across_processes_draws_what_they_allow_together() -> None:
    """Each process has its own RateLimit(20) and its own 10 connections: two of them send
    40/s on up to 20; a SharedRateLimit is one count in Redis for all of them."""
    from ratelab.client.shared_limit import SharedRateLimit

    two = Result(df=run_frame(), meta={"processes": 2},
                 experiment=Experiment(target="http://127.0.0.1:1", workers=20,
                                       strategy=RateLimit(20) + ConnectionLimit(10)))  # fmt: skip
    _fig, (ax_tp, ax_cc) = plt.subplots(1, 2)
    plots.plot_throughput(two, ax=ax_tp, window_s=1.0)
    (rate,) = by_gid(ax_tp, "rate_limit")
    assert list(rate.get_ydata()) == [40.0, 40.0]
    assert rate.get_label() == "rate limit 40/s (2 × 20/s)"
    plots.plot_concurrency(two, ax=ax_cc)
    (cap,) = by_gid(ax_cc, "connection_cap")
    assert list(cap.get_ydata()) == [20.0, 20.0] and cap.get_label() == "connection cap 20 (2 × 10)"
    assert two.windows().limit == 40.0
    shared = Result(df=run_frame(), meta={"processes": 2},
                    experiment=Experiment(target="http://127.0.0.1:1",
                                          strategy=SharedRateLimit(20, period_s=1.0)))  # fmt: skip
    _fig, ax = plt.subplots()
    plots.plot_throughput(shared, ax=ax, window_s=1.0)
    (rate,) = by_gid(ax, "rate_limit")
    assert list(rate.get_ydata()) == [20.0, 20.0] and rate.get_label() == "rate limit 20/s"
    assert shared.windows().limit == 20.0
    plt.close("all")


def test_throughput_bin_follows_the_run_length_and_is_named() -> None:
    # a 1.2 s run: 80 at once, then 100/s (a burst). In one-second bins it was one flat
    # step per second; by default the bin is chosen from the length (0.05 s)
    sent = np.concatenate((np.zeros(80), np.arange(1, 121) * 0.01))
    df = make_frame(scheduled_s=np.zeros(sent.size), sent_s=sent, done_s=sent + 0.001)
    ax = plots.plot_throughput(df, kind="sent")
    assert ax.get_ylabel() == "sent (req/s, 0.05 s bins)"
    (line,) = run_lines(ax)
    y = np.asarray(line.get_ydata())
    assert y[0] == (80 + 4) / 0.05 and set(y[1:-2]) == {100.0}  # the burst, then 100/s
    # dashboards and compare choose the same way; a given window_s is kept
    fig = plots.dashboard(df)
    assert any(ax.get_ylabel() == "requests (req/s, 0.05 s bins)" for ax in fig.axes)
    fig = plots.compare([df, df], window_s=0.25)
    assert any(ax.get_ylabel() == "completed (req/s, 0.25 s bins)" for ax in fig.axes)


def test_runs_on_one_axes_have_different_line_styles() -> None:
    # two equal runs: the second line lies exactly on the first; its dashes keep it seen
    rs = [result(run_frame()), result(run_frame(), name="b"), result(run_frame(), name="c")]
    ax = plots.plot_throughput(rs)
    styles = [ln.get_linestyle() for ln in run_lines(ax)]
    assert len(set(styles)) == 3
    widths = [ln.get_linewidth() for ln in run_lines(ax)]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    fig = plots.compare(rs)
    latency = next(ax for ax in fig.axes if ax.get_xlabel().startswith("latency"))
    assert len({ln.get_linestyle() for ln in run_lines(latency)}) == 3
    # each run keeps its style in its own throughput column
    tps = [ax for ax in fig.axes if ax.get_title() in ("b", "c")]
    assert {run_lines(ax)[0].get_linestyle() for ax in tps} == set(styles[1:])


def test_compare_latency_legend_sits_outside_the_data() -> None:
    rs = [result(run_frame()), result(run_frame(latency=0.5), name="b")]
    fig = plots.compare(rs)
    fig.canvas.draw()
    latency = next(ax for ax in fig.axes if ax.get_xlabel().startswith("latency"))
    legend = latency.get_legend()
    assert legend is not None
    box = legend.get_window_extent().transformed(latency.transAxes.inverted())
    assert box.x0 >= 1.0  # right of the plot: it covers no line


def test_throughput_several_runs_and_kinds() -> None:
    runs = [result(run_frame()), result(run_frame(), RateLimit(5), name="b"), run_frame()]
    ax = plots.plot_throughput(runs)
    assert [ln.get_label() for ln in run_lines(ax)] == [runs[0].label, "b", "run 2"]
    assert sorted(ln.get_ydata()[0] for ln in by_gid(ax, "rate_limit")) == [5.0, 20.0]
    ax = plots.plot_throughput(run_frame(), kind="both")
    assert len(run_lines(ax)) == 1 and len(by_gid(ax, "run_sent")) == 1
    assert by_gid(ax, "rate_limit") == []  # a bare frame has no strategy
    with pytest.raises(ValueError, match="kind"):
        plots.plot_throughput(run_frame(), kind="nope")


# ------------------------------------------------------------------ concurrency


def test_concurrency_caps_and_steps() -> None:
    r = result(run_frame(), RateLimit(20) + ConnectionLimit(10) + Concurrency(3), workers=4)
    _fig, ax = plt.subplots()
    assert plots.plot_concurrency(r, ax=ax) is ax
    assert by_gid(ax, "connection_cap")[0].get_ydata()[0] == 10
    assert by_gid(ax, "concurrency_cap")[0].get_ydata()[0] == 3
    (workers,) = by_gid(ax, "workers")
    assert workers.get_ydata()[0] == 4 and workers.get_linestyle() == ":"
    (line,) = run_lines(ax)
    assert line.get_drawstyle() == "steps-post"
    assert max(line.get_ydata()) == 4  # 250 ms latency, one sent every 62.5 ms
    assert "(requests)" in ax.get_ylabel() and "(s)" in ax.get_xlabel()


def test_concurrency_waiting_lines() -> None:
    df = timeline_frame()
    ax = plots.plot_concurrency(df, waiting=True)
    assert len(by_gid(ax, "waiting_limiter")) == 1 and len(by_gid(ax, "waiting_pool")) == 1
    assert max(by_gid(ax, "waiting_limiter")[0].get_ydata()) == 1


# ------------------------------------------------------------------ latency and waits


def test_latency_ecdf() -> None:
    df = make_frame(sent_s=[0.0, 0.0, 0.0, 0.0], done_s=[0.4, 0.1, 0.3, 0.2])
    _fig, ax = plt.subplots()
    assert plots.plot_latency([df, result(run_frame())], ax=ax) is ax
    first, second = run_lines(ax)
    assert list(first.get_xdata()) == pytest.approx([100, 100, 200, 300, 400])
    assert list(first.get_ydata()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert second.get_label() == "RateLimit(20) + ConnectionLimit(10)"
    assert ax.get_xlabel() == "latency (ms)"
    assert plots.plot_latency(df, unit="s").get_xlabel() == "latency (s)"


def test_waits_stacked_bars() -> None:
    a = make_frame(
        scheduled_s=[0.0],
        dequeued_s=[0.1],
        ready_s=[0.2],
        admitted_s=[0.5],
        pool_queued_s=[0.5],
        pool_acquired_s=[0.6],
        sent_s=[0.6],
        done_s=[1.0],
    )
    b = run_frame()
    _fig, ax = plt.subplots()
    assert plots.plot_waits([a, b], ax=ax) is ax
    widths = {p: [r.get_width() for r in by_gid(ax, p)] for p in plots.PHASE_COLORS}
    assert all(len(w) == 2 for w in widths.values())  # one bar per run per phase
    assert widths["queue"][0] == pytest.approx(100)
    assert widths["think"][0] == pytest.approx(100)
    assert widths["limiter"][0] == pytest.approx(300)
    assert widths["pool"][0] == pytest.approx(100)
    assert widths["in_flight"] == pytest.approx([400, 250])
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "run_label"]
    assert labels == ["run 0: 1,000 ms", "run 1: 1,469 ms"]  # queue 1219 + server 250
    assert "(ms)" in ax.get_xlabel()


def test_waits_can_leave_out_the_closed_loop_backlog() -> None:
    _fig, ax = plt.subplots()
    plots.plot_waits(run_frame(), ax=ax, queue=False)
    assert by_gid(ax, "queue") == []
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "run_label"]
    assert labels == ["run: 250 ms"]  # the 1219 ms queued for a worker are not counted


# ------------------------------------------------------------------ figures


def test_dashboard() -> None:
    r = result(run_frame())
    fig = plots.dashboard(r)
    assert isinstance(fig, Figure)
    assert fig.get_suptitle() == r.label
    assert len(fig.axes) == 5
    for ax in fig.axes:
        assert has_unit(ax.get_xlabel())


def test_compare_shares_axes_and_draws_one_line_per_run() -> None:
    rs = [
        result(run_frame()),
        result(run_frame(latency=0.5), RateLimit(1, period_s=0.05) + ConnectionLimit(10)),
        result(run_frame(20, gap=0.125), Concurrency(2), name="third"),
    ]
    fig = plots.compare(rs)
    panels = [ax for ax in fig.axes if len(run_lines(ax)) == 1]
    assert len(panels) == 6  # throughput and concurrency, one column per run
    assert sorted(ax.get_title() for ax in panels if ax.get_title()) == sorted(r.label for r in rs)
    for r in rs:
        col = [ax for ax in panels if run_lines(ax)[0].get_label() == r.label]
        assert len(col) == 2
    first = panels[0]
    for ax in panels[1:]:
        assert first.get_shared_x_axes().joined(first, ax)
    tps = [ax for ax in panels if ax.get_title()]
    ccs = [ax for ax in panels if not ax.get_title()]
    for group in (tps, ccs):
        assert all(group[0].get_shared_y_axes().joined(group[0], ax) for ax in group)
        assert len({ax.get_ylim() for ax in group}) == 1
    latency = next(ax for ax in fig.axes if ax.get_xlabel().startswith("latency"))
    assert [ln.get_label() for ln in run_lines(latency)] == [r.label for r in rs]
    waits = next(ax for ax in fig.axes if "mean time" in ax.get_xlabel())
    assert len(by_gid(waits, "in_flight")) == 3


def test_no_global_state_changes() -> None:
    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    plots.compare([result(run_frame()), run_frame()])
    plots.dashboard(run_frame())
    assert dict(matplotlib.rcParams) == before
    assert matplotlib.get_backend() == backend
