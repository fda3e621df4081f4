"""Plots of run records: timeline, throughput, concurrency, latency, where the time went.

Every ``plot_*`` function accepts a :class:`~ratelab.analysis.result.Result` or a records DataFrame
(and, where it compares, a list of them), draws on ``ax`` (a new figure when None) and
returns the Axes. :func:`dashboard` puts the panels of one run in one figure, and
:func:`compare` puts several runs side by side on shared axes.

Nothing here changes matplotlib's global state: no style, no rcParams, no backend, no
``plt.show()``. Phases always have the colours in :data:`PHASE_COLORS`; runs take the
colours of the active property cycle (``C0``, ``C1``, ...) in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ratelab.analysis import metrics as analysis
from ratelab.analysis.frames import labelled_runs, ok_mask, records_frame, time_column

if TYPE_CHECKING:
    from ratelab.analysis.result import Result

__all__ = [
    "CAP_STYLES",
    "FAILURE_COLOR",
    "PHASE_COLORS",
    "PHASE_LABELS",
    "compare",
    "dashboard",
    "plot_concurrency",
    "plot_latency",
    "plot_throughput",
    "plot_timeline",
    "plot_waits",
]

#: One colour per phase of a request, used by every plot.
PHASE_COLORS: dict[str, str] = {
    "queue": "#edc948",  # waiting in the work queue for a worker
    "think": "#bab0ac",  # the worker's think time
    "limiter": "#f28e2b",  # waiting for a client-side guard (rate limiter, semaphore)
    "pool": "#b07aa1",  # waiting for a pooled connection
    "in_flight": "#4e79a7",  # sent, waiting for the server's response
}
#: Legend names of the phases.
PHASE_LABELS: dict[str, str] = {
    "queue": "queued for a worker",
    "think": "think time",
    "limiter": "waiting for a limiter or semaphore",
    "pool": "waiting for a connection",
    "in_flight": "in flight (server)",
}
#: Marker colour of failed attempts.
FAILURE_COLOR = "#e15759"
RETRY_COLOR = "#59316b"  # marks attempts 2, 3, ... in the timeline
#: Reference lines (rate limit, caps, workers): (colour, linestyle). Dark grey, so that
#: they never look like a run's line (runs take the property cycle's colours).
CAP_STYLES: dict[str, tuple[str, str]] = {
    "rate_limit": ("0.2", "--"),
    "connection_cap": ("0.2", "--"),
    "concurrency_cap": ("0.2", "-."),
    "workers": ("0.45", ":"),
}

_TIME_LABEL = "time since start (s)"
_UNITS = {"s": 1.0, "ms": 1e3}

# (phase, start column, end column) of the timeline bars, in the order a request lives.
_TIMELINE_PHASES: tuple[tuple[str, str, str], ...] = (
    ("think", "dequeued_s", "ready_s"),
    ("limiter", "ready_s", "admitted_s"),
    ("pool", "pool_queued_s", "pool_acquired_s"),
    ("in_flight", "sent_s", "done_s"),
)

Data = Any  # a Result, a records DataFrame, or a sequence of them


# --------------------------------------------------------------------------- helpers


def _ax(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    return ax


def _color(i: int) -> str:
    return f"C{i % 10}"


#: Line styles of runs 0, 1, 2, ... where runs share an Axes: a line that lies on another
#: still shows (solid, dashed, dotted, dash-dot), and the first runs are drawn wider.
_RUN_STYLES: tuple[str, ...] = ("-", "--", ":", "-.")


def _style(i: int) -> dict[str, Any]:
    """The linestyle and width of run ``i`` on a shared Axes."""
    return {"linestyle": _RUN_STYLES[i % len(_RUN_STYLES)], "linewidth": max(2.4 - 0.4 * i, 1.2)}


def _span_s(runs: list[tuple[str, pd.DataFrame, Any]]) -> float:
    """The latest ``sent_s``/``done_s`` of any run (s): how long the throughput axis is."""
    latest = 0.0
    for _, df, _ in runs:
        for col in ("sent_s", "done_s"):
            t = time_column(df, col)
            t = t[np.isfinite(t)]
            if t.size:
                latest = max(latest, float(t.max()))
    return latest


def _window(window_s: float | None, runs: list[tuple[str, pd.DataFrame, Any]]) -> float:
    """``window_s``, or (None) a bin width chosen from the runs' length and from the
    completions of the sparsest run (a few per bin at least)."""
    if window_s is not None:
        return window_s
    done = [int(np.isfinite(time_column(df, "done_s")).sum()) for _, df, _ in runs]
    events = min((n for n in done if n > 0), default=None)
    return analysis.auto_window_s(_span_s(runs), events=events)


def _strategy(res: Any) -> Any:
    exp = getattr(res, "experiment", None)
    return getattr(exp, "strategy", None)


def _processes(res: Any) -> int:
    """How many processes (or simulated clients) the run was split across (1: one)."""
    meta = getattr(res, "meta", None) or {}
    return int(meta.get("processes", 1) or 1)


def _scale(unit: str) -> float:
    if unit not in _UNITS:
        raise ValueError(f"unit={unit!r} is invalid: must be 's' or 'ms'")
    return _UNITS[unit]


def _legend(ax: Axes, *, inside: str | None = "upper right", refs_only: bool = False) -> None:
    """The Axes' legend: ``inside`` at that loc, or (None) outside, right of the plot.

    ``refs_only`` keeps only the reference lines (rate limit, caps, workers)."""
    handles, labels = ax.get_legend_handles_labels()
    if refs_only:
        keep = [i for i, h in enumerate(handles) if h.get_gid() in CAP_STYLES]
        handles, labels = [handles[i] for i in keep], [labels[i] for i in keep]
    if not handles:
        return
    if inside is None:
        where: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0),
                                 "borderaxespad": 0.0, "frameon": False}  # fmt: skip
    else:
        where = {"loc": inside, "framealpha": 0.85}
    ax.legend(handles, labels, fontsize="small", **where)


def _headroom(ax: Axes, entries: int | None = None) -> None:
    """y from 0, with room at the top for an upper-right legend of ``entries`` lines."""
    if entries is None:
        entries = len(ax.get_legend_handles_labels()[0])
    ax.autoscale_view()
    top = ax.get_ylim()[1]
    ax.set_ylim(0, (top if top > 0 else 1.0) * (1.0 + 0.09 * min(entries, 8)))


def _sub(label: str, what: str, many: bool) -> str:
    return f"{label} ({what})" if many else what


def _hline(ax: Axes, kind: str, y: float, label: str, drawn: set[tuple[str, float]]) -> None:
    """A reference line (rate limit, cap, workers), once per (kind, value) on an Axes."""
    if (kind, y) in drawn:
        return
    drawn.add((kind, y))
    color, ls = CAP_STYLES[kind]
    ax.axhline(y, color=color, linestyle=ls, linewidth=1.3, label=label, gid=kind, zorder=1.5)


# --------------------------------------------------------------------------- timeline


def plot_timeline(
    r: Result | pd.DataFrame, *, ax: Axes | None = None, max_requests: int = 500
) -> Axes:
    """Each attempt as a horizontal bar on its worker's row, coloured by phase.

    Phases: think time (``dequeued_s`` to ``ready_s``), waiting for the limiter
    (``ready_s`` to ``admitted_s``), waiting for a connection (``pool_queued_s`` to
    ``pool_acquired_s``) and in flight (``sent_s`` to ``done_s``); a wait cut short by a
    failure ends at ``done_s``. Failed attempts get a red x at ``done_s``; retries (attempt
    2, 3, ...) a triangle where they start, after their backoff (drawn as think time). Only the
    attempts of the first ``max_requests`` requests (lowest ids) are drawn. Each phase is
    one :class:`~matplotlib.collections.PolyCollection` (what ``broken_barh`` makes, built
    in one go for bars on different rows), labelled with :data:`PHASE_LABELS`.
    """
    ax = _ax(ax)
    df = records_frame(r)
    rid = df["request_id"].to_numpy()
    ids = np.unique(rid)
    n_requests = ids.size
    sel = df["worker"].to_numpy() >= 0
    if n_requests > max_requests:
        sel &= rid <= ids[max_requests - 1] if max_requests > 0 else False
    d = df[sel]
    y = d["worker"].to_numpy().astype(np.float64)
    done = time_column(d, "done_s")
    half = 0.4
    for phase, start, end in _TIMELINE_PHASES:
        s = time_column(d, start)
        e = time_column(d, end)
        if end != "done_s":
            e = np.where(np.isnan(e), done, e)
        m = np.isfinite(s) & np.isfinite(e) & (e > s)
        x0, x1, yy = s[m], e[m], y[m]
        verts = np.stack(
            [
                np.column_stack((x0, yy - half)),
                np.column_stack((x0, yy + half)),
                np.column_stack((x1, yy + half)),
                np.column_stack((x1, yy - half)),
            ],
            axis=1,
        )
        col = PolyCollection(
            verts,
            facecolors=PHASE_COLORS[phase],
            edgecolors="none",
            label=PHASE_LABELS[phase],
            gid=phase,
        )
        ax.add_collection(col, autolim=True)
    ready = time_column(d, "ready_s")
    failed = ~ok_mask(d) & np.isfinite(done)
    retry = (d["attempt"].to_numpy() > 1) & np.isfinite(ready)
    # failures at their end; retries where they start, after their backoff (drawn as think)
    for gid, x, mask, marker, color in (
        ("failed", done, failed, "x", FAILURE_COLOR),
        ("retry", ready, retry, ">", RETRY_COLOR),
    ):
        if mask.any():
            ax.plot(x[mask], y[mask], linestyle="none", marker=marker, markersize=5,
                    color=color, label=f"{gid} ({int(mask.sum())})", gid=gid)  # fmt: skip
    ax.autoscale_view()
    ax.set_xlim(left=min(0.0, ax.get_xlim()[0]))
    if y.size:
        ax.set_ylim(y.max() + 0.6, y.min() - 0.6)  # worker 0 on top
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=12))
    ax.set_xlabel(_TIME_LABEL)
    ax.set_ylabel("worker (id)")
    shown = min(n_requests, max(max_requests, 0))
    what = f"first {shown:,} of {n_requests:,} requests" if shown < n_requests else "all requests"
    ax.set_title(f"timeline ({what})", fontsize="medium")
    _legend(ax, inside=None)
    return ax


# --------------------------------------------------------------------------- throughput


def _draw_throughput(
    ax: Axes, runs: list[tuple[str, pd.DataFrame, Any]], colors: list[str], window_s: float,
    kind: str, styles: list[dict[str, Any]] | None = None,
) -> None:  # fmt: skip
    drawn: set[tuple[str, float]] = set()
    many = len(runs) > 1
    if styles is None:
        styles = [_style(i) if many else _style(0) for i in range(len(runs))]
    for (label, df, res), color, style in zip(runs, colors, styles, strict=True):
        tp = analysis.throughput(df, window_s=window_s)
        if len(tp):
            x = np.append(tp["t_s"].to_numpy(), tp["t_s"].iloc[-1] + window_s)
            if kind in ("done", "both"):
                y = tp["done_per_s"].to_numpy()
                name = label if kind == "done" else _sub(label, "completed", many)
                ax.plot(x, np.append(y, y[-1]), drawstyle="steps-post", color=color,
                        label=name, gid="run", **style)  # fmt: skip
            if kind in ("sent", "both"):
                y = tp["sent_per_s"].to_numpy()
                name = label if kind == "sent" else _sub(label, "sent", many)
                # beside "completed" it is thin, dotted and on top: both show where they meet
                sent_style = style if kind == "sent" else {
                    "linestyle": (0, (1.5, 1.5)), "linewidth": 1.4, "zorder": 2.5,
                    "alpha": 0.9, "color": color if many else "0.15"}  # fmt: skip
                ax.plot(x, np.append(y, y[-1]), drawstyle="steps-post",
                        **({"color": color} | sent_style), label=name,
                        gid="run" if kind == "sent" else "run_sent")  # fmt: skip
        strategy = _strategy(res)
        rate = getattr(strategy, "rate_limit_per_s", None)
        if rate is not None:
            n = _processes(res)  # each process its own limiter (a shared one: once)
            fleet = strategy.rate_limit_across(n)
            split = f" ({n} × {rate:g}/s)" if fleet != rate else ""
            _hline(ax, "rate_limit", float(fleet), f"rate limit {fleet:g}/s{split}", drawn)
    ax.set_xlabel(_TIME_LABEL)
    noun = {"done": "completed", "sent": "sent", "both": "requests"}[kind]
    ax.set_ylabel(f"{noun} (req/s, {window_s:g} s bins)")


def plot_throughput(
    r_or_list: Data, *, ax: Axes | None = None, window_s: float | None = None,
    kind: str = "done",
) -> Axes:  # fmt: skip
    """Requests per second over time, one step line per run (bins of ``window_s`` s).

    ``window_s`` None (the default) chooses the bin from the runs' length and size
    (:func:`~ratelab.analysis.metrics.auto_window_s`: at most 25 bins, a few completions
    per bin); the y label says the width. ``kind``: ``"done"`` (attempts completed, failures
    included), ``"sent"``, or ``"both"`` (sent as a thin dotted line on top). Several runs
    get different line styles (solid, dashed, dotted, ...), so a line lying on another
    still shows. A run whose strategy has a ``rate_limit_per_s`` gets a dashed horizontal
    line at that rate, labelled e.g. ``"rate limit 20/s"``.
    """
    if kind not in ("done", "sent", "both"):
        raise ValueError(f"kind={kind!r} is invalid: must be 'done', 'sent' or 'both'")
    ax = _ax(ax)
    runs = labelled_runs(r_or_list)
    window_s = _window(window_s, runs)
    _draw_throughput(ax, runs, [_color(i) for i in range(len(runs))], window_s, kind)
    _headroom(ax)
    ax.set_title("throughput", fontsize="medium")
    _legend(ax)
    return ax


# --------------------------------------------------------------------------- concurrency


def _draw_concurrency(
    ax: Axes, runs: list[tuple[str, pd.DataFrame, Any]], colors: list[str], waiting: bool
) -> None:
    drawn: set[tuple[str, float]] = set()
    many = len(runs) > 1
    for (label, df, res), color in zip(runs, colors, strict=True):
        c = analysis.concurrency(df)
        t = c["t_s"].to_numpy()
        t0 = min(0.0, float(t[0])) if t.size else 0.0
        x = np.append(t0, t)

        def step(col: str, c: pd.DataFrame = c, x: np.ndarray = x, **kw: Any) -> None:
            ax.plot(x, np.append(0, c[col].to_numpy()), drawstyle="steps-post", **kw)

        name = label if many or not waiting else "in flight"
        step("in_flight", color=color, linewidth=1.4, label=name, gid="run")
        if waiting:
            for col, phase in (("waiting_pool", "pool"), ("waiting_limiter", "limiter")):
                if c[col].any():
                    name = PHASE_LABELS[phase] + (f" ({label})" if many else "")
                    step(col, color=PHASE_COLORS[phase], linewidth=1.0, alpha=0.9, label=name,
                         gid=f"waiting_{phase}")  # fmt: skip
        strategy = _strategy(res)
        n = _processes(res)  # a cap holds in each process: n of them together
        for kind, name in (("connection_cap", "connection cap"),
                           ("concurrency_cap", "concurrency cap")):  # fmt: skip
            cap = getattr(strategy, kind, None)
            if cap is not None:
                split = f" ({n} × {cap})" if n > 1 else ""
                _hline(ax, kind, float(cap * n), f"{name} {cap * n}{split}", drawn)
        workers = getattr(getattr(res, "experiment", None), "workers", None)
        if workers is not None:
            _hline(ax, "workers", float(workers), f"workers {workers}", drawn)
    ax.set_xlabel(_TIME_LABEL)
    ax.set_ylabel("in flight (requests)" if not waiting else "requests (count)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def plot_concurrency(r_or_list: Data, *, ax: Axes | None = None, waiting: bool = False) -> Axes:
    """Requests in flight (sent, not yet done) over time, one step line per run.

    Dashed lines mark the strategy's ``connection_cap`` and ``concurrency_cap``, a dotted
    line the number of workers. With ``waiting=True`` the requests waiting for the limiter
    and for a connection are drawn too (thin lines in the phase colours).
    """
    ax = _ax(ax)
    runs = labelled_runs(r_or_list)
    _draw_concurrency(ax, runs, [_color(i) for i in range(len(runs))], waiting)
    _headroom(ax)
    ax.set_title("concurrency", fontsize="medium")
    _legend(ax)
    return ax


# --------------------------------------------------------------------------- latency


def plot_latency(
    r_or_list: Data, *, ax: Axes | None = None, unit: str = "ms", log: bool = False
) -> Axes:
    """The ECDF of latency (``done_s - sent_s``, failures included), one line per run
    (several: solid, dashed, dotted, ...; the legend outside, right of the plot).

    ``unit`` is ``"ms"`` or ``"s"``; ``log=True`` puts latency on a log axis.
    """
    scale = _scale(unit)
    ax = _ax(ax)
    runs = labelled_runs(r_or_list)
    for i, (label, df, _) in enumerate(runs):
        lat = np.sort(analysis.latency(df)) * scale
        if lat.size == 0:
            ax.plot([], [], color=_color(i), label=f"{label} (no latencies)", gid="run")
            continue
        y = np.arange(1, lat.size + 1) / lat.size
        style = _style(i) if len(runs) > 1 else {"linewidth": 1.6}
        ax.plot(np.append(lat[0], lat), np.append(0.0, y), drawstyle="steps-post",
                color=_color(i), label=label, gid="run", **style)  # fmt: skip
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"latency ({unit})")
    ax.set_ylabel("attempts with latency ≤ x (%)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title("latency (ECDF)", fontsize="medium")
    _legend(ax, inside="lower right" if len(runs) == 1 else None)
    return ax


# --------------------------------------------------------------------------- waits

_WAIT_PHASES: tuple[tuple[str, str], ...] = (
    ("queue_s", "queue"),
    ("think_s", "think"),
    ("limiter_s", "limiter"),
    ("pool_s", "pool"),
    ("server_s", "in_flight"),
)


def plot_waits(
    r_or_list: Data, *, ax: Axes | None = None, unit: str = "ms", queue: bool = True
) -> Axes:
    """Where the time went: mean time per attempt in each phase, one stacked bar per run.

    Phases (see :func:`ratelab.analysis.metrics.phase_means`): queued for a worker, think time,
    waiting for the limiter, waiting for a connection, in flight (server latency). The
    run's label and total are written above its bar. ``queue=False`` leaves out the time
    queued for a worker: in a closed loop it is the backlog of a queue filled up front and
    can dwarf the waits a strategy causes.
    """
    scale = _scale(unit)
    ax = _ax(ax)
    pm = analysis.phase_means(r_or_list).fillna(0.0) * scale
    n = len(pm)
    ypos = np.arange(n)
    left = np.zeros(n)
    for col, phase in _WAIT_PHASES:
        if phase == "queue" and not queue:
            continue
        w = pm[col].to_numpy()
        ax.barh(ypos, w, left=left, height=0.5, color=PHASE_COLORS[phase],
                label=PHASE_LABELS[phase], gid=phase)  # fmt: skip
        left = left + w
    for yi, label, total in zip(ypos, pm.index, left, strict=True):
        amount = f"{total:,.0f}" if total >= 100 else f"{total:.3g}"
        ax.text(0, yi - 0.3, f"{label}: {amount} {unit}", va="bottom", ha="left",
                fontsize="small", gid="run_label")  # fmt: skip
    ax.set_yticks([])  # the labels sit above the bars: long strategy names fit
    ax.set_ylim(n - 0.6, -0.85)  # first run on top
    ax.set_xlim(0, max(float(left.max(initial=0.0)) * 1.05, 1e-9))
    ax.set_xlabel(f"mean time per attempt ({unit})")
    ax.set_title("where the time went", fontsize="medium")
    _legend(ax, inside=None)
    return ax


# --------------------------------------------------------------------------- figures


def dashboard(
    result: Result | pd.DataFrame,
    *,
    figsize: tuple[float, float] = (13.0, 11.0),
    window_s: float | None = None,
    max_requests: int = 500,
) -> Figure:
    """One run on one figure: timeline on top, then throughput and concurrency (sharing
    time), then latency ECDF and where the time went. The title is the run's label.
    ``window_s`` is the throughput bin (None: chosen from the run's length)."""
    runs = labelled_runs(result)
    if len(runs) != 1:
        raise ValueError("dashboard() takes one run; use compare() for several")
    fig = plt.figure(figsize=figsize, layout="constrained")
    gs = fig.add_gridspec(3, 2, height_ratios=(1.4, 1.0, 1.0))
    ax_tl = fig.add_subplot(gs[0, :])
    ax_tp = fig.add_subplot(gs[1, 0])
    ax_cc = fig.add_subplot(gs[1, 1], sharex=ax_tp)
    ax_lat = fig.add_subplot(gs[2, 0])
    ax_w = fig.add_subplot(gs[2, 1])
    plot_timeline(result, ax=ax_tl, max_requests=max_requests)
    plot_throughput(result, ax=ax_tp, window_s=window_s, kind="both")
    plot_concurrency(result, ax=ax_cc, waiting=True)
    plot_latency(result, ax=ax_lat)
    plot_waits(result, ax=ax_w)
    fig.suptitle(runs[0][0], fontweight="bold")
    return fig


def compare(
    results: Sequence[Result | pd.DataFrame],
    *,
    figsize: tuple[float, float] | None = None,
    window_s: float | None = None,
) -> Figure:
    """Several runs side by side.

    Top two rows: one column per run (titled by its label) with throughput and then
    in-flight concurrency; every panel shares the time axis, and each row shares its y
    axis, so the runs compare at a glance. Bottom row: the latency ECDFs overlaid, and
    one "where the time went" bar per run. Each run keeps its colour and line style in
    every panel (solid, dashed, dotted, ...: overlaid ECDFs stay apart). ``window_s`` is
    the throughput bin (None: chosen from the longest run).
    """
    runs = labelled_runs(results)
    n = len(runs)
    if n == 0:
        raise ValueError("compare() needs at least one run")
    if figsize is None:
        figsize = (max(11.0, 4.2 * n), 10.5)
    fig = plt.figure(figsize=figsize, layout="constrained")
    outer = fig.add_gridspec(2, 1, height_ratios=(2.0, 1.1))
    top = outer[0].subgridspec(2, n)
    bottom = outer[1].subgridspec(1, 2, width_ratios=(1.2, 1.0))
    window_s = _window(window_s, runs)
    first: Axes | None = None
    first_cc: Axes | None = None
    for j, run in enumerate(runs):
        color = [_color(j)]
        style = [_style(j) if n > 1 else _style(0)]
        ax_tp = fig.add_subplot(top[0, j], sharex=first, sharey=first)
        ax_cc = fig.add_subplot(top[1, j], sharex=first or ax_tp, sharey=first_cc)
        first = first or ax_tp
        first_cc = first_cc or ax_cc
        _draw_throughput(ax_tp, [run], color, window_s, "done", style)
        _draw_concurrency(ax_cc, [run], color, waiting=False)
        ax_tp.set_title(run[0], fontsize="medium", color=_color(j), fontweight="bold")
        ax_tp.set_xlabel("")
        ax_tp.tick_params(labelbottom=False)
        if j > 0:
            for ax in (ax_tp, ax_cc):
                ax.set_ylabel("")
                ax.tick_params(labelleft=False)
        _legend(ax_tp, inside="upper right", refs_only=True)  # the title names the run
        _legend(ax_cc, inside="upper right", refs_only=True)
    for ax in (first, first_cc):  # shared: autoscale over every column, then floor at 0
        if ax is not None:
            ax.autoscale_view()
            _headroom(ax, entries=2)
    plot_latency(results, ax=fig.add_subplot(bottom[0, 0]))
    plot_waits(results, ax=fig.add_subplot(bottom[0, 1]))
    fig.suptitle(f"{n} run{'' if n == 1 else 's'} compared", fontweight="bold")
    return fig
