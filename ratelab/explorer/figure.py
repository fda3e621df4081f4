"""The explorer's figure: four panels sharing time, drawn off-screen to PNG bytes.

Throughput (finished per second), requests in flight (and waiting on the client), the mean
client-side wait (limiter + pool) of the requests that became ready in each window, and
the cumulative count of refusals (429) and other failures. The current setting is drawn in
colour, pinned settings as grey ghost lines, a real run over the simulation in black.

Drawn on a bare :class:`matplotlib.figure.Figure` (the Agg canvas, no pyplot): nothing is
shown by a notebook's inline backend, no global state is touched, and it is safe on the
explorer's worker thread.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ratelab.analysis.metrics import concurrency

if TYPE_CHECKING:
    from ratelab.analysis.result import Result

__all__ = ["Canvas", "Line", "nice_ceiling", "render_png", "sticky", "window_for"]

CURRENT = "#4e79a7"
REAL = "#000000"
GHOSTS = ("#9a9a9a", "#c2c2c2", "#7a7a7a", "#b0b0b0", "#8a8a8a")


@dataclass(frozen=True)
class Line:
    """One run to draw: its Result, its legend label and how (current, ghost or real)."""

    result: Result
    label: str
    kind: str = "current"  # "current", "ghost" or "real"


def window_for(duration_s: float) -> float:
    """A 1-2-5 window giving about 40 bins over ``duration_s`` (at least 1 ms), and at least
    1 s once the run spans 10 s: requests that finish in batches (n connections, a fixed
    latency) make shorter bins alternate between counts (aliasing), not show the rate."""
    if not duration_s > 0 or not math.isfinite(duration_s):
        return 1.0
    raw = duration_s / 40 if duration_s < 10 else max(duration_s / 40, 1.0)
    exp = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * exp >= raw:
            return max(float(m * exp), 0.001)
    return float(10 * exp)  # pragma: no cover - the loop always returns


def _series(result: Result, window_s: float) -> dict[str, np.ndarray]:
    df = result.df
    done = df["done_s"].to_numpy(dtype=float)
    ready = df["ready_s"].to_numpy(dtype=float)
    admitted = df["admitted_s"].to_numpy(dtype=float)
    queued = df["pool_queued_s"].to_numpy(dtype=float)
    acquired = df["pool_acquired_s"].to_numpy(dtype=float)
    status = df["status"].to_numpy()
    ok_done = done[np.isfinite(done)]
    t_max = float(ok_done.max()) if ok_done.size else 0.0
    n_bins = int(t_max // window_s) + 1
    edges = np.arange(n_bins + 1) * window_s

    def bins(t: np.ndarray) -> np.ndarray:
        t = t[np.isfinite(t)]
        idx = np.clip((t // window_s).astype(np.int64), 0, n_bins - 1)
        return np.bincount(idx, minlength=n_bins)

    pool = np.where(np.isfinite(queued) & np.isfinite(acquired), acquired - queued, 0.0)
    wait = (admitted - ready) + pool
    has = np.isfinite(wait) & np.isfinite(ready)
    idx = np.clip((ready[has] // window_s).astype(np.int64), 0, n_bins - 1)
    total = np.bincount(idx, weights=wait[has], minlength=n_bins)
    count = np.bincount(idx, minlength=n_bins)
    mean_wait = np.divide(total, count, out=np.full(n_bins, np.nan), where=count > 0)
    bad = np.isfinite(done) & ~((status >= 200) & (status < 300))
    refused_t = np.sort(done[bad])
    cc = concurrency(df)
    t = cc["t_s"].to_numpy()
    return {
        "edges": edges,
        "done_per_s": bins(done) / window_s,
        "mean_wait_s": mean_wait,
        "refused_t": refused_t,
        "in_flight": _bin_means(t, cc["in_flight"].to_numpy(), edges),
        "waiting": _bin_means(t, (cc["waiting_limiter"] + cc["waiting_pool"]).to_numpy(), edges),
        "t_max": np.array([t_max]),
    }


def _bin_means(t: np.ndarray, level: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The time-weighted mean per bin of a step series (``level[i]`` from ``t[i]`` on, 0
    before ``t[0]``)."""
    if t.size == 0:
        return np.zeros(edges.size - 1)
    area = np.concatenate(([0.0], np.cumsum(level[:-1] * np.diff(t))))  # area up to t[i]
    i = np.searchsorted(t, edges, side="right") - 1
    before = i < 0
    i = np.clip(i, 0, None)
    at_edges = np.where(before, 0.0, area[i] + level[i] * (edges - t[i]))
    return np.diff(at_edges) / np.diff(edges)


def _steps(edges: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin values as a step line from the first edge to the last."""
    return edges, np.append(values, values[-1] if values.size else np.nan)


#: per panel: the smallest upper limit of its y axis (so an empty panel still has a scale)
_Y_FLOORS = (1.0, 1.0, 0.01, 1.0)
#: per panel: how the limit follows the data (the refusal count grows fast with the rate:
#: more headroom, kept down to a quarter full)
_Y_STICKY: tuple[dict[str, float], ...] = ({}, {}, {}, {"headroom": 1.6, "keep": 0.25})


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k at or above ``value`` (> 0)."""
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * exp >= value * (1 - 1e-12):
            return float(m * exp)
    return float(10 * exp)  # pragma: no cover - the loop always returns


def sticky(
    limit: float | None, value: float, floor: float, *, headroom: float = 1.25, keep: float = 0.5
) -> float:
    """An axis's upper limit for data reaching ``value``: kept while the data fill between
    ``keep`` of it and all of it (a steady scale makes settings comparable, and a redraw
    that keeps every axis needs no text drawn), else a round limit above ``value x
    headroom``."""
    if not math.isfinite(value) or value <= 0:
        value = 0.0
    if limit is not None and keep * limit <= value <= limit:
        return limit
    return max(nice_ceiling(value * headroom) if value > 0 else floor, floor)


class Canvas:
    """One figure, made once and redrawn for every setting. The axes (frames, ticks, tick
    labels, titles) are rendered once into a background and kept while no axis limit
    changes (limits are sticky: see :func:`sticky`); a redraw restores that background and
    draws only the lines and the legend on it (blitting). Text is most of what a full draw
    costs. Not thread-safe: one thread draws."""

    def __init__(self, *, figsize: tuple[float, float] = (11.0, 5.6), dpi: float = 80.0) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.figure = fig = Figure(figsize=figsize, dpi=dpi)
        self.canvas = FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.06, right=0.985, bottom=0.09, top=0.95, wspace=0.16,
                            hspace=0.3)  # fmt: skip
        axes = fig.subplots(2, 2, sharex=True)
        self.axes = axes
        (ax_tp, ax_fl), (ax_w, ax_r) = axes
        ax_tp.set(ylabel="finished / s")
        ax_fl.set(ylabel="requests", title="mean in flight (solid), waiting on the client (dotted)")
        ax_w.set(xlabel="time (s)", ylabel="s", title="mean wait before sending (limiter + pool)")
        ax_r.set(xlabel="time (s)", ylabel="count", title="refused (429) and failed, cumulative")
        for ax in axes.flat:
            ax.grid(alpha=0.3)
            ax.set_autoscale_on(False)
            ax.yaxis.set_major_locator(MaxNLocator(5))
            ax.xaxis.set_major_locator(MaxNLocator(8))
        self._limits: tuple[float, ...] | None = None
        self._background: object = None
        self._cache: dict[tuple[int, float], tuple[Result, dict[str, np.ndarray]]] = {}
        #: how many renders drew the axes again (the rest only blitted lines)
        self.full_draws = 0

    def _series(self, result: Result, window_s: float) -> dict[str, np.ndarray]:
        key = (id(result), window_s)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is result:
            return hit[1]
        if len(self._cache) > 32:
            self._cache.clear()
        s = _series(result, window_s)
        self._cache[key] = (result, s)
        return s

    def render(self, lines: Sequence[Line]) -> bytes:
        """Draw ``lines`` (ghosts first, then the current run, then a real run) and return
        PNG bytes."""
        from PIL import Image

        order = {"ghost": 0, "current": 1, "real": 2}
        lines = sorted(lines, key=lambda line: order[line.kind])
        t_end = max((_t_end(ln.result) for ln in lines), default=0.0)
        old = self._limits
        x_max = sticky(None if old is None else old[0], t_end, 1.0, headroom=1.05)
        window_s = window_for(x_max)
        data = [self._series(ln.result, window_s) for ln in lines]
        y_data = [
            max((float(np.nanmax(s["done_per_s"], initial=0)) for s in data), default=0.0),
            max((_in_flight_max(s) for s in data), default=0.0),
            max((float(np.nanmax(s["mean_wait_s"], initial=0)) for s in data), default=0.0),
            max((float(s["refused_t"].size) for s in data), default=0.0),
        ]
        y_max = [
            sticky(None if old is None else old[i + 1], v, _Y_FLOORS[i], **_Y_STICKY[i])
            for i, v in enumerate(y_data)
        ]
        limits = (x_max, *y_max)
        (ax_tp, ax_fl), (ax_w, ax_r) = self.axes
        if limits != self._limits or self._background is None:
            for ax, top in zip(self.axes.flat, y_max, strict=True):
                ax.set_xlim(0, x_max)
                ax.set_ylim(0, top)
            ax_tp.set_title(f"throughput ({window_s:g} s bins)")
            self.canvas.draw()
            self._background = self.canvas.copy_from_bbox(self.figure.bbox)
            self._limits = limits
            self.full_draws += 1
        else:
            self.canvas.restore_region(self._background)
        artists = []
        ghost_i = 0
        for line, s in zip(lines, data, strict=True):
            if line.kind == "ghost":
                color, lw, ls, alpha, z = GHOSTS[ghost_i % len(GHOSTS)], 1.6, "-", 0.9, 1
                ghost_i += 1
            elif line.kind == "real":
                color, lw, ls, alpha, z = REAL, 1.4, "--", 1.0, 3
            else:
                color, lw, ls, alpha, z = CURRENT, 2.0, "-", 1.0, 2
            kw = {"color": color, "lw": lw, "ls": ls, "alpha": alpha, "zorder": z}
            artists += ax_tp.step(*_steps(s["edges"], s["done_per_s"]), where="post",
                                  label=line.label, **kw)  # fmt: skip
            artists += ax_fl.step(*_steps(s["edges"], s["in_flight"]), where="post", **kw)
            if line.kind == "current":
                artists += ax_fl.step(*_steps(s["edges"], s["waiting"]), where="post",
                                      color=color, lw=1.0, ls=":")  # fmt: skip
            artists += ax_w.step(*_steps(s["edges"], s["mean_wait_s"]), where="post", **kw)
            r = s["refused_t"]
            counts = np.concatenate(([0], np.arange(1, r.size + 1), [r.size]))
            t_last = float(s["t_max"][0])
            artists += ax_r.step(np.concatenate(([0.0], r, [t_last])), counts, where="post", **kw)
        if lines:
            artists.append(ax_tp.legend(loc="lower right", fontsize="small", framealpha=0.85))
        for artist in artists:
            artist.axes.draw_artist(artist)
        for artist in artists:  # the background stays bare
            artist.remove()
        width, height = self.canvas.get_width_height()
        image = Image.frombuffer("RGBA", (width, height), self.canvas.buffer_rgba())
        buf = io.BytesIO()
        image.convert("RGB").save(buf, "png", compress_level=1)
        return buf.getvalue()


def _in_flight_max(s: dict[str, np.ndarray]) -> float:
    return float(max(np.max(s["in_flight"], initial=0), np.max(s["waiting"], initial=0)))


def _in_flight_max(s: dict[str, np.ndarray]) -> float:
    return float(max(np.max(s["in_flight"], initial=0), np.max(s["waiting"], initial=0)))


def _t_end(result: Result) -> float:
    done = result.df["done_s"].to_numpy(dtype=float)
    return float(np.nanmax(done, initial=0.0)) if done.size else 0.0


def render_png(lines: Sequence[Line], *, figsize: tuple[float, float] = (11.0, 5.6),
               dpi: float = 80.0) -> bytes:  # fmt: skip
    """Draw ``lines`` on a new :class:`Canvas` and return PNG bytes."""
    return Canvas(figsize=figsize, dpi=dpi).render(lines)
