"""Vectorised analysis of run records: throughput, concurrency, sliding windows, summaries.

Every function takes the records frame documented in :mod:`ratelab.records.store` (one row per
request attempt, times in seconds on the run clock, NaN when a moment did not happen) or a
:class:`~ratelab.analysis.result.Result` (its ``.df`` is used). Nothing here loops over rows in
Python: each computation is a handful of numpy kernels (``bincount``, stable ``argsort`` +
``cumsum``, ``searchsorted``), so a million-row frame takes well under a second per call.

Definitions used throughout (per row):

* latency = ``done_s - sent_s`` (attempts with both set, failures included)
* limiter wait = ``admitted_s - ready_s`` (attempts with both set)
* pool wait = ``pool_acquired_s - pool_queued_s``, 0 when the attempt did not wait for a
  connection (attempts that were sent)
* think = ``ready_s - dequeued_s``; queue wait = ``dequeued_s - scheduled_s``
* an attempt is *ok* when it has no ``error`` and ``200 <= status < 400``
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ratelab.analysis.frames import finite, labelled_runs, ok_mask, records_frame, time_column
from ratelab.errors import ConfigError

if TYPE_CHECKING:
    from ratelab.analysis.result import Result

__all__ = [
    "PHASES",
    "SUMMARY_COLUMNS",
    "WindowStats",
    "auto_window_s",
    "concurrency",
    "latency",
    "max_sent_column",
    "phase_means",
    "strategy_burst_s",
    "summary",
    "summary_columns",
    "throughput",
    "time_weighted_mean",
    "windows",
]

#: Tolerance (s) on a sliding window's right edge: a time within this of ``t + window_s``
#: counts as *at* the edge (outside the half-open window). It absorbs float rounding in
#: schedules such as ``k * 0.05``, which should put request 20 exactly at 1.0 s.
_EDGE_EPS = 1e-9

#: Tolerance (in bins) on a throughput bin's left edge, for the same float rounding.
_BIN_EPS = 1e-9

#: The attributes of a strategy part that make it burst at the start, and how long that
#: burst can last (s): aiolimiter's ``RateLimit`` and ``SharedRateLimit`` a ``period_s``,
#: a ``SlidingWindow`` a ``window_s``, a ``TokenBucket`` ``burst / rate_per_s``.
_BURST_ATTRS: tuple[str, ...] = ("period_s", "window_s")

#: The columns of :func:`summary` at the default ``window_s=1.0`` (after ``strategy`` and
#: ``workers`` for Results). The busiest-window column is named after the window
#: (:func:`max_sent_column`); :func:`summary_columns` gives the columns for any window.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "requests",
    "attempts",
    "ok",
    "errors",
    "errors_by_kind",
    "duration_s",
    "rate_per_s",
    "steady_rate_per_s",
    "peak_in_flight",
    "mean_in_flight",
    "latency_p50_s",
    "latency_p90_s",
    "latency_p99_s",
    "limiter_wait_mean_s",
    "limiter_wait_max_s",
    "pool_wait_mean_s",
    "pool_wait_max_s",
    "max_sent_1s",
    "littles_law_in_flight",
    "littles_law_ratio",
)
_MAX_SENT_AT = SUMMARY_COLUMNS.index("max_sent_1s")


def max_sent_column(window_s: float) -> str:
    """The name of :func:`summary`'s busiest-window column for a window of ``window_s``
    seconds: ``max_sent_{window_s:g}s``, e.g. ``max_sent_1s`` (the default),
    ``max_sent_0.5s``, ``max_sent_10s``."""
    return f"max_sent_{window_s:g}s"


def summary_columns(*, window_s: float = 1.0) -> tuple[str, ...]:
    """The columns of ``summary(..., window_s=window_s)`` (after ``strategy`` and
    ``workers`` for Results): :data:`SUMMARY_COLUMNS` with the busiest-window column
    named after ``window_s``."""
    cols = list(SUMMARY_COLUMNS)
    cols[_MAX_SENT_AT] = max_sent_column(window_s)
    return tuple(cols)


#: (column in concurrency(), start column, end column) of each step series.
_STEP_SERIES: tuple[tuple[str, str, str], ...] = (
    ("waiting_limiter", "ready_s", "admitted_s"),
    ("waiting_pool", "pool_queued_s", "pool_acquired_s"),
    ("in_flight", "sent_s", "done_s"),
)


# --------------------------------------------------------------------------- helpers


def _intervals(df: pd.DataFrame, start: str, end: str) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the rows where ``start`` happened and the interval closed.

    An interval whose own end is missing closes at ``done_s`` (the attempt failed or was
    cancelled while waiting there); one with neither is dropped (it never closed).
    """
    s = time_column(df, start)
    e = time_column(df, end)
    if end != "done_s":
        e = np.where(np.isnan(e), time_column(df, "done_s"), e)
    keep = np.isfinite(s) & np.isfinite(e)
    return s[keep], e[keep]


def _step(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The count of open ``[start, end)`` intervals after each event.

    Returns event times (sorted, with repeats) and the level after each event. Ends are
    placed before starts, and the sort is stable, so at equal times every end is applied
    before any start: an interval ending exactly when another starts does not overlap it,
    and a zero-length interval never counts.
    """
    times = np.concatenate((ends, starts))
    deltas = np.concatenate(
        (np.full(ends.size, -1, dtype=np.int64), np.ones(starts.size, dtype=np.int64))
    )
    order = np.argsort(times, kind="stable")
    return times[order], np.cumsum(deltas[order])


def _level_at(event_t: np.ndarray, level: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The step level in force at each time ``t`` (after all events at ``t``); 0 before."""
    idx = np.searchsorted(event_t, t, side="right") - 1
    out = np.zeros(t.size, dtype=np.int64)
    ok = idx >= 0
    out[ok] = level[idx[ok]]
    return out


def _sliding_max(sorted_t: np.ndarray, window_s: float) -> tuple[int, float]:
    """Largest number of times in any ``[t, t + window_s)`` and that window's start."""
    if sorted_t.size == 0:
        return 0, float("nan")
    ends = np.searchsorted(sorted_t, sorted_t + (window_s - _EDGE_EPS), side="left")
    counts = ends - np.arange(sorted_t.size)
    i = int(np.argmax(counts))
    return int(counts[i]), float(sorted_t[i])


# --------------------------------------------------------------------------- public API


def latency(data: pd.DataFrame | Result) -> np.ndarray:
    """Latencies ``done_s - sent_s`` in seconds of the attempts that were sent and ended
    (failures included), in row order."""
    df = records_frame(data)
    lat = time_column(df, "done_s") - time_column(df, "sent_s")
    return lat[np.isfinite(lat)]


def throughput(data: pd.DataFrame | Result, *, window_s: float = 1.0) -> pd.DataFrame:
    """Requests sent and finished per second, in fixed bins of ``window_s`` seconds.

    Bin ``k`` covers ``[k * window_s, (k + 1) * window_s)`` on the run clock, from 0 up to
    the bin holding the latest ``sent_s`` / ``done_s``. Columns: ``t_s`` (bin start, s),
    ``sent_per_s`` and ``done_per_s`` (count in the bin / ``window_s``, in 1/s). ``done``
    counts every attempt that ended, failed ones included. Times before 0 fall in bin 0.
    """
    if not window_s > 0:
        raise ValueError(f"window_s={window_s!r} is invalid: must be > 0")
    df = records_frame(data)
    sent = finite(time_column(df, "sent_s"))
    done = finite(time_column(df, "done_s"))
    if sent.size == 0 and done.size == 0:
        return pd.DataFrame(
            {"t_s": np.zeros(0), "sent_per_s": np.zeros(0), "done_per_s": np.zeros(0)}
        )
    t_max = max(sent.max(initial=0.0), done.max(initial=0.0))
    # a time within float rounding of a bin's start is in that bin: 7 * 0.05 (0.35000000000000003)
    # and 0.35 / 0.05 (6.999999999999999) both belong to bin 7
    n_bins = int(np.floor(t_max / window_s + _BIN_EPS)) + 1

    def counts(t: np.ndarray) -> np.ndarray:
        idx = np.clip(np.floor(t / window_s + _BIN_EPS).astype(np.int64), 0, n_bins - 1)
        return np.bincount(idx, minlength=n_bins)

    return pd.DataFrame(
        {
            "t_s": np.arange(n_bins) * window_s,
            "sent_per_s": counts(sent) / window_s,
            "done_per_s": counts(done) / window_s,
        }
    )


#: Bin widths :func:`auto_window_s` chooses from: 1, 2, 5 times a power of ten.
_NICE_STEPS = (1.0, 2.0, 5.0)


def auto_window_s(duration_s: float, *, events: int | None = None, bins: int = 25,
                  per_bin: float = 4.0) -> float:  # fmt: skip
    """A throughput bin width (s) for a run of ``duration_s`` seconds: the smallest of
    1, 2, 5 x 10^k that gives at most ``bins`` bins and, when the run's number of
    ``events`` (e.g. completions) is given, at least ``per_bin`` of them per bin on average
    (fewer make a steady rate alias into a saw-tooth: 5/s in 0.5 s bins reads 4, 6, 4, 6).
    0.05 s for a 1.2 s run of many requests (which one-second bins would draw as one flat
    step), 0.5 s for 10 s, 1 s for 20 s; 1 s for 50 requests over 10 s. A non-positive or
    non-finite duration gets 1 s."""
    if not (np.isfinite(duration_s) and duration_s > 0):
        return 1.0
    n_bins = float(bins)
    if events is not None and events > 0:
        n_bins = max(1.0, min(n_bins, events / per_bin))
    target = float(duration_s) / n_bins
    exp = np.floor(np.log10(target))
    for step in (*_NICE_STEPS, 10.0):
        width = step * 10.0**exp
        if width >= target * (1 - 1e-12):
            return float(f"{width:.12g}")  # 0.05, not 0.05000000000000001
    return float(10.0 ** (exp + 1))  # pragma: no cover - the loop always returns


def concurrency(data: pd.DataFrame | Result) -> pd.DataFrame:
    """How many attempts are in each phase, as a step series over the run.

    One row per distinct event instant ``t_s`` (s, sorted); each count holds from that
    instant until the next row (all counts are 0 before the first row):

    * ``waiting_limiter``: between ``ready_s`` and ``admitted_s`` (client-side guards)
    * ``waiting_pool``: between ``pool_queued_s`` and ``pool_acquired_s``
    * ``in_flight``: between ``sent_s`` and ``done_s``

    Intervals are half-open ``[start, end)``: one ending when another starts does not
    overlap it. A wait whose end is missing (the attempt failed while waiting) ends at
    ``done_s``; an interval that never closed (``done_s`` NaN too) is left out.
    """
    df = records_frame(data)
    # Sort each series' events (ends before starts at equal times), then merge the three
    # sorted runs with one stable argsort (cheap on runs) and cumsum each series' deltas
    # in merged order; the last event of each instant gives the level from then on.
    times, deltas, kinds = [], [], []
    for i, (_, start, end) in enumerate(_STEP_SERIES):
        s, e = _intervals(df, start, end)
        t = np.concatenate((e, s))
        d = np.concatenate((np.full(e.size, -1, np.int8), np.ones(s.size, np.int8)))
        o = np.argsort(t, kind="stable")
        times.append(t[o])
        deltas.append(d[o])
        kinds.append(np.full(t.size, i, np.int8))
    t = np.concatenate(times)
    o = np.argsort(t, kind="stable")
    t = t[o]
    d = np.concatenate(deltas)[o]
    k = np.concatenate(kinds)[o]
    last = np.ones(t.size, dtype=bool)  # last event at each instant
    last[:-1] = t[1:] != t[:-1]
    out: dict[str, np.ndarray] = {"t_s": t[last]}
    for i, (name, _, _) in enumerate(_STEP_SERIES):
        out[name] = np.cumsum(np.where(k == i, d, 0), dtype=np.int64)[last]
    return pd.DataFrame(out)


def time_weighted_mean(
    series_t: np.ndarray | pd.Series | Sequence[float],
    values: np.ndarray | pd.Series | Sequence[float],
    t_start: float,
    t_end: float,
) -> float:
    """Mean over ``[t_start, t_end]`` (s) of a step function, weighting by time.

    ``values[i]`` holds from ``series_t[i]`` until ``series_t[i + 1]`` (the last until
    ``t_end``); the function is 0 before ``series_t[0]``. ``series_t`` must be sorted.
    Returns NaN for an empty interval (``t_end <= t_start``).
    """
    t = np.asarray(series_t, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape:
        raise ValueError(f"series_t and values differ in shape: {t.shape} vs {v.shape}")
    span = float(t_end) - float(t_start)
    if not span > 0 or t.size == 0:
        return float("nan") if not span > 0 else 0.0
    edges = np.clip(np.append(t, t_end), t_start, t_end)
    return float(np.dot(v, np.diff(edges)) / span)


@dataclass(frozen=True)
class WindowStats:
    """The busiest sliding window of sent requests (see :func:`windows`).

    ``max_sent`` requests were sent in ``[t_s, t_s + window_s)`` (s); ``limit`` is the
    allowed count per window (None: not checked) and ``complied`` whether
    ``max_sent <= limit`` (None without a limit).
    """

    max_sent: int
    t_s: float
    window_s: float
    limit: float | None = None
    complied: bool | None = None

    def __str__(self) -> str:
        where = f"[{self.t_s:g}, {self.t_s + self.window_s:g}) s"
        text = f"{self.max_sent} sent in {where}"
        if self.limit is not None:
            verdict = "complies with" if self.complied else "exceeds"
            text += f": {verdict} the limit of {self.limit:g} per {self.window_s:g} s"
        return text


def windows(
    data: pd.DataFrame | Result, *, window_s: float = 1.0, limit: float | None = None
) -> WindowStats:
    """The largest number of requests sent in any sliding window ``[t, t + window_s)``.

    This is what a server counting requests over a sliding window sees. A fresh
    ``aiolimiter.AsyncLimiter(20, 1)`` sends 20 requests at once and then one per 50 ms,
    so 39 land in ``[0, 1)`` (the 40th at exactly 1.0 s starts the next window), while
    ``AsyncLimiter(1, 0.05)`` sends one per 50 ms: 20 in any window. The window is
    half-open; times within 1 ns of its right edge count as on the edge.
    """
    if not window_s > 0:
        raise ValueError(f"window_s={window_s!r} is invalid: must be > 0")
    sent = np.sort(finite(time_column(records_frame(data), "sent_s")))
    n, t = _sliding_max(sent, window_s)
    complied = None if limit is None else bool(n <= limit)
    return WindowStats(max_sent=n, t_s=t, window_s=float(window_s), limit=limit, complied=complied)


def _errors_by_kind(df: pd.DataFrame, ok: np.ndarray) -> dict[str, int]:
    """Counts of non-ok attempts by exception name, or ``"HTTP nnn"`` without one."""
    bad = ~ok
    err = df["error"]
    has_err = err.notna().to_numpy()
    out: dict[str, int] = {}
    by_exc = err[bad & has_err].value_counts(sort=False)
    out.update({str(k): int(v) for k, v in by_exc.items() if v > 0})
    codes = df["status"].to_numpy()[bad & ~has_err].astype(np.int64)
    if codes.size:
        uniq, cnt = np.unique(codes, return_counts=True)
        out.update({f"HTTP {c}": int(n) for c, n in zip(uniq, cnt, strict=True)})
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _stats(a: np.ndarray) -> tuple[float, float]:
    return (float(a.mean()), float(a.max())) if a.size else (float("nan"), float("nan"))


def strategy_burst_s(strategy: Any) -> float:
    """How long (s) a strategy's initial burst can last: the longest first period of its
    rate limits (``RateLimit``/``SharedRateLimit``: ``period_s``; ``SlidingWindow``:
    ``window_s``; ``TokenBucket``: ``burst / rate_per_s``), 0 when none of its parts has
    one (or ``strategy`` is None).

    ``RateLimit(20)`` is aiolimiter's bucket of 20, full at the start: 20 requests go at
    once and the bucket then drains at 20/s, so 39 are sent in the first second. From the
    end of its first period on, requests leave at the steady rate (in a closed loop; an open
    loop arriving faster than the limit keeps the burst going longer: 30/s against 20/s
    fills the bucket only at 20 + 20t = 30t, t = 2 s). The strategy description is read by
    its attributes: nothing of the client is imported.
    """
    longest = 0.0
    parts = getattr(strategy, "parts", None) or ((strategy,) if strategy is not None else ())
    for part in parts:
        for attr in _BURST_ATTRS:
            value = getattr(part, attr, None)
            if isinstance(value, int | float) and np.isfinite(value):
                longest = max(longest, float(value))
        burst, rate = getattr(part, "burst", None), getattr(part, "rate_per_s", None)
        if isinstance(burst, int | float) and isinstance(rate, int | float) and rate > 0:
            longest = max(longest, float(burst) / float(rate))
    return longest


def _steady_rate(sent: np.ndarray, done: np.ndarray, cut_s: float) -> float:
    """The steady completion rate (1/s) of the attempts sent at or after ``cut_s`` (s):
    the least-squares slope of their cumulative count of completions against time. It is
    exactly r for completions every 1/r s, and also for batches (k completions at once every
    k/r s, as a connection cap of k with a fixed latency gives), where (count - 1) / span
    would not be. NaN for fewer than two completions or none apart (never left the burst)."""
    keep = np.isfinite(sent) & np.isfinite(done) & (sent >= cut_s - _EDGE_EPS)
    d = np.sort(done[keep])
    if d.size < 2:
        return float("nan")
    dt = d - d.mean()
    var = float(np.dot(dt, dt))
    if not var > 0:
        return float("nan")
    n = np.arange(d.size, dtype=np.float64)
    return float(np.dot(dt, n - n.mean()) / var)


def _summary_row(df: pd.DataFrame, window_s: float, burst: float) -> dict[str, Any]:
    ok = ok_mask(df)
    attempts = len(df)
    n_ok = int(ok.sum())
    scheduled = time_column(df, "scheduled_s")
    sent = time_column(df, "sent_s")
    done = time_column(df, "done_s")
    done_f = finite(done)

    t_start = float(np.nanmin(scheduled)) if np.isfinite(scheduled).any() else float("nan")
    t_end = float(done_f.max()) if done_f.size else float("nan")
    duration = t_end - t_start
    has_span = bool(duration > 0)
    rate = done_f.size / duration if has_span else float("nan")

    # Steady rate: the attempts sent after the initial burst (the first period of every
    # rate limit); the slope of their completions' cumulative count over time.
    first = float(np.nanmin(sent)) if np.isfinite(sent).any() else 0.0
    origin = t_start if np.isfinite(t_start) else first
    steady = _steady_rate(sent, done, origin + burst)

    lat_mask = np.isfinite(sent) & np.isfinite(done)
    lat = done[lat_mask] - sent[lat_mask]
    ev_t, level = _step(sent[lat_mask], done[lat_mask])
    peak = int(level.max()) if level.size else 0
    mean_fl = time_weighted_mean(ev_t, level, t_start, t_end) if has_span else float("nan")
    if lat.size:
        p50, p90, p99 = (float(q) for q in np.quantile(lat, [0.5, 0.9, 0.99]))
    else:
        p50 = p90 = p99 = float("nan")

    lim = time_column(df, "admitted_s") - time_column(df, "ready_s")
    lim_mean, lim_max = _stats(finite(lim))
    pool = time_column(df, "pool_acquired_s") - time_column(df, "pool_queued_s")
    pool = np.where(np.isnan(pool), 0.0, pool)[np.isfinite(sent)]
    pool_mean, pool_max = _stats(pool)

    little = lat.size / duration * float(lat.mean()) if has_span and lat.size else float("nan")
    ratio = mean_fl / little if little > 0 else float("nan")

    return {
        "requests": int(df["request_id"].nunique()),
        "attempts": attempts,
        "ok": n_ok,
        "errors": attempts - n_ok,
        "errors_by_kind": _errors_by_kind(df, ok),
        "duration_s": duration,
        "rate_per_s": rate,
        "steady_rate_per_s": steady,
        "peak_in_flight": peak,
        "mean_in_flight": mean_fl,
        "latency_p50_s": p50,
        "latency_p90_s": p90,
        "latency_p99_s": p99,
        "limiter_wait_mean_s": lim_mean,
        "limiter_wait_max_s": lim_max,
        "pool_wait_mean_s": pool_mean,
        "pool_wait_max_s": pool_max,
        max_sent_column(window_s): _sliding_max(np.sort(finite(sent)), window_s)[0],
        "littles_law_in_flight": little,
        "littles_law_ratio": ratio,
    }


def summary(data: Any, *, window_s: float = 1.0, burst_s: float | None = None) -> pd.DataFrame:
    """One row of headline numbers per run (a frame, a Result, or a list of them).

    The index is the run's label (``"run"`` for a bare frame, ``"run i"`` for the i-th
    frame of a list). For Results the first columns are ``strategy`` (its repr) and
    ``workers``. Then (times in s, rates in 1/s):

    * ``requests`` distinct request ids; ``attempts`` rows; ``ok``; ``errors`` (non-ok
      attempts); ``errors_by_kind`` a dict such as ``{"HTTP 500": 3, "TimeoutError": 2}``
      (exception name, else ``"HTTP nnn"``), largest first
    * ``duration_s`` first ``scheduled_s`` to last ``done_s``; ``rate_per_s`` ended
      attempts / duration; ``steady_rate_per_s`` the rate after the initial burst: over
      the attempts sent at least ``burst_s`` after the start, the least-squares slope of
      the cumulative count of their completions against time (exactly r for completions
      every 1/r s, or in batches of k every k/r s; NaN when fewer than two were sent after
      the burst)
    * ``peak_in_flight``, ``mean_in_flight`` (time-weighted over the duration)
    * ``latency_p50_s`` / ``p90`` / ``p99`` (linear-interpolated quantiles of
      ``done_s - sent_s`` over attempts with both, failures included)
    * ``limiter_wait_mean_s`` / ``max`` (``admitted_s - ready_s``, where both are set);
      ``pool_wait_mean_s`` / ``max`` (over sent attempts, 0 for those that did not wait)
    * ``max_sent_{window_s:g}s`` the most requests sent in any sliding window of
      ``window_s`` (``max_sent_1s`` at the default 1 s, ``max_sent_0.5s`` for 0.5 s; see
      :func:`max_sent_column`)
    * ``littles_law_in_flight`` = (attempts with a latency / duration) x mean latency, and
      ``littles_law_ratio`` = ``mean_in_flight`` / that. Both measure the same area, so
      the ratio is 1 up to rounding unless some times are inconsistent (e.g. a request
      sent before the first one was scheduled).

    ``burst_s`` (s): how much of the start ``steady_rate_per_s`` leaves out. None (the
    default): for a Result, :func:`strategy_burst_s` of its strategy (``RateLimit(20)``: 1 s, so
    aiolimiter's initial burst of 20 extra requests is not counted as steady); for a bare
    frame, 0.
    """
    if burst_s is not None and not (
        isinstance(burst_s, int | float) and np.isfinite(burst_s) and burst_s >= 0
    ):
        raise ConfigError("burst_s", burst_s, "a finite number of seconds >= 0, or None")
    runs = labelled_runs(data)
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    any_result = any(res is not None for _, _, res in runs)
    for label, df, res in runs:
        row: dict[str, Any] = {}
        if any_result:
            exp = getattr(res, "experiment", None)
            row["strategy"] = repr(exp.strategy) if exp is not None else None
            row["workers"] = exp.workers if exp is not None else None
        if burst_s is not None:
            burst = float(burst_s)
        else:
            burst = strategy_burst_s(_strategy_of(res))
        row.update(_summary_row(df, window_s, burst))
        rows.append(row)
        labels.append(label)
    cols = (["strategy", "workers"] if any_result else []) + list(
        summary_columns(window_s=window_s)
    )
    return pd.DataFrame(rows, index=pd.Index(labels, name="label"), columns=cols)


def _strategy_of(res: Any) -> Any:
    return getattr(getattr(res, "experiment", None), "strategy", None)


#: Phases of :func:`phase_means`, in the order a request lives through them.
PHASES: tuple[str, ...] = ("queue_s", "think_s", "limiter_s", "pool_s", "server_s")


def phase_means(data: Any) -> pd.DataFrame:
    """Where the time went: mean seconds per attempt in each phase, one row per run.

    Over the attempts that were sent and ended (``sent_s`` and ``done_s`` set):
    ``queue_s`` (dequeued - scheduled; first attempts only, as a retry's ``scheduled_s``
    is its request's), ``think_s`` (ready - dequeued), ``limiter_s`` (admitted - ready),
    ``pool_s`` (pool wait, 0 when it did not wait) and ``server_s`` (latency). Index: label.
    """
    rows = []
    labels = []
    for label, df, _ in labelled_runs(data):
        sent = time_column(df, "sent_s")
        m = np.isfinite(sent) & np.isfinite(time_column(df, "done_s"))
        first = m & (df["attempt"].to_numpy() == 1)

        def diff(a: str, b: str, mask: np.ndarray, df: pd.DataFrame = df) -> float:
            x = (time_column(df, b) - time_column(df, a))[mask]
            x = x[np.isfinite(x)]
            return float(x.mean()) if x.size else float("nan")

        pool = (time_column(df, "pool_acquired_s") - time_column(df, "pool_queued_s"))[m]
        pool = np.where(np.isnan(pool), 0.0, pool)
        rows.append(
            {
                "queue_s": diff("scheduled_s", "dequeued_s", first),
                "think_s": diff("dequeued_s", "ready_s", m),
                "limiter_s": diff("ready_s", "admitted_s", m),
                "pool_s": float(pool.mean()) if pool.size else float("nan"),
                "server_s": diff("sent_s", "done_s", m),
            }
        )
        labels.append(label)
    return pd.DataFrame(rows, index=pd.Index(labels, name="label"), columns=list(PHASES))
