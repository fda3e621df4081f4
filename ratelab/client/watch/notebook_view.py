"""The live view in JupyterLab: a small matplotlib figure re-rendered in place.

The figure is drawn with matplotlib's Agg canvas (a ``Figure`` made directly, never
registered with pyplot, so the inline backend does not show it again at the end of the
cell), saved as a PNG at a low resolution, and shown with IPython's
``display(..., display_id=True)``; each refresh calls ``handle.update(...)`` with the new
image. JupyterLab 4 swaps the output in place with no extra package (``ipympl`` would need
its extension and a live kernel to show anything in a saved notebook; a plain image is
what a saved notebook keeps). When the run ends the handle is updated once more with the
final static figure, drawn from the Result (:func:`ratelab.analysis.state_plots.plot_state`),
so the saved notebook holds it.

Above the figure, one line of headline numbers (the terminal view's text, as HTML: the
browser renders text for free, matplotlib's glyphs cost ~10x more than the lines).
Panels, on one time axis (run clock): completed per second and 429s per second; in flight,
waiting for a limiter, waiting for a connection; the sampled limiter and pool state.

A frame costs little: the axes, ticks and legends are a cached background (drawn before the
run starts, over the run's expected length when its strategy has a rate; redrawn only when
the data outgrow the axes, which then grow generously); each refresh draws only the lines
onto it (matplotlib's blitting), from series extended by what is new since the last frame,
and encodes a PNG on a palette of the lines' colours (a line chart has few colours: a third
of the bytes and a third of the time of a full-colour PNG). Frames come every
:data:`REFRESH_S` on a deadline (the feeder waits exactly until the next is due), and less
often only where a frame costs more CPU than :data:`CPU_SHARE` of a core allows (a slow
machine). Measured in ``benchmarks/README.md``.
"""

from __future__ import annotations

import html
import io
import math
import time
from typing import Any

from ratelab.client.watch.snapshot import Snapshot, take
from ratelab.client.watch.terminal import format_snapshot

__all__ = ["NotebookView"]

#: The plotted series of the headline numbers (each a line), besides their times ``t``.
_SERIES = ("rate", "429", "in_flight", "limiter", "pool")

#: Wall seconds between two frames (at least two a second are asked for: 2.5, with room).
REFRESH_S = 0.4
#: Wall seconds from the first call (the run's start) to the first frame.
FIRST_S = 0.3
#: The share of a core the frames may take: a frame that costs more CPU than
#: ``CPU_SHARE * REFRESH_S`` (12 ms) stretches the wait before the next one.
CPU_SHARE = 0.03
_DPI = 60
#: Wall seconds at least between two redraws of the background (axes grown).
REDRAW_S = 4.0
_FINAL_DPI = 90


class NotebookView:
    """Progress-bar compatible (``update_to``, ``close``): a figure updated in place."""

    def __init__(
        self, engines: list[Any], *, label: str, refresh_s: float = REFRESH_S,
        workers: int = 1, rate_per_s: float | None = None, expected_s: float | None = None,
    ) -> None:  # fmt: skip
        from IPython.display import Image, display

        self.engines = engines
        self.label = label
        self.refresh_s = refresh_s
        self.interval_s = refresh_s  # longer only where frames cost more than CPU_SHARE
        self.due = -math.inf  # monotonic time the next frame is due
        self._last: Snapshot | None = None  # the previous frame's snapshot (429s since)
        self.frames = 0
        self.redraws = 0  # frames that redrew the background (the axes grew, a new line)
        self.frame_cpu_s = 0.0  # the last frame's CPU (blitted frames only)
        self.cpu_s = {"blitted": 0.0, "redrawn": 0.0}  # all frames' CPU, by kind
        self._fig: Any = None
        self._image = Image
        self._series: dict[str, list[float]] = {k: [] for k in ("t", *_SERIES)}
        self._state: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        self._cursor: tuple[Any, int, int] = (None, -1, 0)  # sampler, generation, rows read
        self._peaks = [0.0, 0.0, 0.0]  # the highest value plotted on each axes
        self._moved: set[Any] = set()  # the series (names, state keys) ever not 0
        # the axes start at what the run can reach (time: its expected length; counts: the
        # workers; rates: the rate limit), so they rarely grow and the background is rarely
        # redrawn
        self._xmax = 1.1 * expected_s if expected_s and math.isfinite(expected_s) else 2.0
        self._tops = (2.2 * rate_per_s if rate_per_s else 1.0, 1.15 * workers, 1.15 * workers)
        self.text = display(_line(f"ratelab: starting {self.label}"), display_id=True)
        self.handle = display(_line(""), display_id=True)
        self._build()  # before the run starts: imports, axes, the first full draw
        self._fig.canvas.draw()
        self._background = self._fig.canvas.copy_from_bbox(self._fig.bbox)

    # -- the figure ----------------------------------------------------------------------
    def _build(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        fig = Figure(figsize=(10.0, 6.0), dpi=_DPI)
        FigureCanvasAgg(fig)
        # the legends sit right of the axes, never over the data
        fig.subplots_adjust(left=0.07, right=0.72, top=0.92, bottom=0.08, hspace=0.12)
        ax_tp, ax_cc, ax_st = fig.subplots(3, 1, sharex=True)

        def line(ax: Any, color: str, label: str) -> Any:
            return ax.plot([], [], color=color, label=label, animated=True)[0]

        self._lines = {
            "rate": line(ax_tp, "#4e79a7", "completed /s (last 1 s)"),
            "429": line(ax_tp, "#e15759", "429 /s"),
            "in_flight": line(ax_cc, "#4e79a7", "in flight"),
            "limiter": line(ax_cc, "#f28e2b", "waiting: limiter"),
            "pool": line(ax_cc, "#b07aa1", "waiting: connection"),
        }
        ax_tp.set_ylabel("per second")
        ax_cc.set_ylabel("requests")
        ax_st.set_ylabel("state")
        ax_st.set_xlabel("time since start (s)")
        for ax in (ax_tp, ax_cc):
            _legend(ax)
        for ax, top in zip((ax_tp, ax_cc, ax_st), self._tops, strict=True):
            ax.set_ylim(0, top)
            ax.yaxis.set_major_locator(MaxNLocator(4))  # fewer labels: a cheaper redraw
        ax_st.xaxis.set_major_locator(MaxNLocator(6))
        ax_tp.set_xlim(0, self._xmax)
        fig.suptitle(f"{self.label} (live)", fontsize="medium")
        self._axes = (ax_tp, ax_cc, ax_st)
        self._state_lines: dict[tuple[str, str], Any] = {}
        self._fig = fig
        self._palette = _palette(self._colours())
        self._background: Any = None
        self._redrawn = -float("inf")

    def _grow(self, snap: Snapshot, *, redraw: bool = False) -> tuple[bool, list[Any]]:
        """Widen the axes the data leave (time to the run's expected end, from its
        progress, and a fifth more; counts to twice the top), so the background (axes,
        ticks, legends) is redrawn only a few times in a run: (the time axis grew, the axes
        whose counts grew). Between two redraws at least :data:`REDRAW_S` pass (meanwhile
        the lines are clipped). When a panel is redrawn anyway (``redraw``: a new line),
        the axes are also widened to where the run is heading (its expected end; a rate's
        top: at least its mean so far), so the same redraw serves for the rest of a
        steady run."""
        if not redraw and time.monotonic() - self._redrawn < REDRAW_S:
            return False, []
        ax_tp = self._axes[0]
        t_s, done = snap.t_s, snap.done
        eta = t_s * snap.total / done if done else 2 * t_s
        xmax = ax_tp.get_xlim()[1]
        wider = t_s > xmax or (redraw and done > 0 and eta > xmax)
        if wider:
            ax_tp.set_xlim(0, max(eta, t_s) * 1.2)
        heading = (max(self._peaks[0], done / t_s if t_s > 0 else 0.0), *self._peaks[1:])
        taller = []
        for ax, peak, top in zip(self._axes, self._peaks, heading, strict=True):
            if peak > ax.get_ylim()[1] or (redraw and top > ax.get_ylim()[1]):
                ax.set_ylim(0, top * 2)
                taller.append(ax)
        return wider, taller

    def _redraw(self, axes: list[Any]) -> None:
        """Redraw the background of ``axes`` only (their ticks, labels and legend; a new
        legend or a taller axis): paint over each one's area, draw it again, keep the
        result. Text is most of a redraw's cost, and one of three axes has a third of it."""
        from matplotlib.patches import Rectangle

        canvas = self._fig.canvas
        renderer = canvas.get_renderer()
        canvas.restore_region(self._background)
        for ax in axes:
            box = ax.get_tightbbox(renderer)  # with the legend and the tick labels
            blank = Rectangle(
                (box.x0 - 1, box.y0 - 1), box.width + 2, box.height + 2, transform=None,
                facecolor=self._fig.get_facecolor(), edgecolor="none",
            )  # fmt: skip
            blank.set_figure(self._fig)
            blank.draw(renderer)
            ax.draw(renderer)  # everything but the animated artists
        self._background = canvas.copy_from_bbox(self._fig.bbox)

    def _extend(self, snap: Snapshot) -> None:
        """Append the snapshot to the plotted series (the 429 rate: since the last one)."""
        sr, prev = self._series, self._last
        self._last = snap
        sr["t"].append(snap.t_s)
        sr["rate"].append(snap.rate_per_s)
        dt = snap.t_s - prev.t_s if prev is not None else 0.0
        sr["429"].append((snap.rejected - prev.rejected) / max(dt, 1e-9) if prev else 0.0)
        sr["in_flight"].append(snap.in_flight)
        sr["limiter"].append(snap.waiting_limiter)
        sr["pool"].append(snap.waiting_pool)
        self._moved.update(name for name in _SERIES if sr[name][-1])
        peaks = self._peaks
        peaks[0] = max(peaks[0], sr["rate"][-1], sr["429"][-1])
        peaks[1] = max(peaks[1], snap.in_flight, snap.waiting_limiter, snap.waiting_pool)

    def _read_state(self) -> bool:
        """Extend each (guard, quantity)'s series with the samples taken since the last
        frame (all of them again after the sampler thinned its samples); True if a quantity
        appeared (its line and the legend are new)."""
        first = self.engines[0] if self.engines else None
        sampler = getattr(getattr(first, "engines", [first])[0], "sampler", None)
        if sampler is None:
            return False
        seen, generation, start = self._cursor
        if seen is not sampler:
            generation, start = -1, 0
        rows = sampler.since(generation, start)
        if rows is None:  # being thinned: at the next frame
            return False
        if rows[0] != generation:  # read from row 0
            for xs, ys in self._state.values():
                xs.clear()
                ys.clear()
        generation, end, ts, keys, values = rows
        self._cursor = (sampler, generation, end)
        new_line = False
        ax_st = self._axes[2]
        for ti, k, v in zip(ts, keys, values, strict=True):
            xy = self._state.get(k)
            if xy is None:
                xy = self._state[k] = ([], [])
                self._state_lines[k] = ax_st.plot(
                    [], [], drawstyle="steps-post", label=f"{k[0]}: {k[1]}", animated=True
                )[0]
                new_line = True
            xy[0].append(ti)
            xy[1].append(v)
            if v:
                self._moved.add(k)
            if v > self._peaks[2]:
                self._peaks[2] = v
        for k, (xs, ys) in self._state.items():
            self._state_lines[k].set_data(xs, ys)
        if new_line:
            _legend(ax_st)
            self._palette = _palette(self._colours())
        return new_line

    def _colours(self) -> list[Any]:
        return [ln.get_color() for ln in (*self._lines.values(), *self._state_lines.values())]

    def _draw(self) -> None:
        cpu = time.thread_time()
        snap = take(self.engines)
        if snap is None:
            return
        self._extend(snap)
        t = self._series["t"]
        for name in _SERIES:
            self._lines[name].set_data(t, self._series[name])
        new_line = self._read_state()
        self.text.update(_line(f"{self.label}: {format_snapshot(snap)}"))
        fig = self._fig
        canvas = fig.canvas
        wider, taller = self._grow(snap, redraw=new_line)
        if new_line and self._axes[2] not in taller:
            taller.append(self._axes[2])  # its legend is new
        redrawn = wider or bool(taller)
        if redrawn:
            self._redrawn = time.monotonic()
        if wider:  # the shared time axis: every axes
            canvas.draw()  # everything but the animated artists
            self._background = canvas.copy_from_bbox(fig.bbox)
        elif taller:
            self._redraw(taller)
        else:
            canvas.restore_region(self._background)
        # a line that has only been 0 lies on the axis: not drawn (a third of the lines,
        # often: no 429s, no pool queue)
        for name, artist in self._lines.items():
            if name in self._moved:
                fig.draw_artist(artist)
        for key, artist in self._state_lines.items():
            if key in self._moved:
                fig.draw_artist(artist)
        self.handle.update(self._image(data=_png(canvas, self._palette), format="png"))
        self.frames += 1
        cpu = time.thread_time() - cpu
        if redrawn:  # rare: at most one per REDRAW_S
            self.redraws += 1
            self.cpu_s["redrawn"] += cpu
        else:
            self.cpu_s["blitted"] += cpu
            self.frame_cpu_s = cpu
            self.interval_s = max(self.refresh_s, cpu / CPU_SHARE)

    # -- progress-bar interface ----------------------------------------------------------
    def update_to(self, n: int = 0) -> float:
        """Draw a frame if one is due; returns the wall seconds until the next is due."""
        now = time.monotonic()
        if self.due == -math.inf:  # the run has just started: its first frame a little
            # later, when its progress says where it is heading (see _grow)
            self.due = now + FIRST_S
        if now < self.due:
            return self.due - now
        # on a deadline: a frame drawn a little late does not push the next one back
        start = self.due if now - self.due < self.interval_s else now
        self._draw()  # may stretch interval_s (a costly frame)
        self.due = start + self.interval_s
        return max(self.due - time.monotonic(), 0.0)

    def close(self, result: Any = None) -> None:
        """The final static figure (from ``result``), or the last live frame; the headline
        line at the run's end."""
        if result is None:
            self._draw()
            return
        snap = take(self.engines)
        if snap is not None:
            self.text.update(_line(f"{self.label}: {format_snapshot(snap)}"))
        import matplotlib.pyplot as plt

        from ratelab.analysis.state_plots import plot_state

        fig = plot_state(result)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_FINAL_DPI)
        plt.close(fig)  # shown once, through the handle (not again by the inline backend)
        self.handle.update(self._image(data=buf.getvalue(), format="png"))


def _legend(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0)


def _palette(colours: list[Any]) -> Any:
    """A palette image for the frames: greys (white, black, the text's and the axes'
    anti-aliasing) and each line's colour blended with white at five strengths (a line's
    anti-aliased edge). Mapping onto a palette fixed in advance takes half the time of
    choosing one per frame, and every line keeps its own colour."""
    from matplotlib.colors import to_rgb
    from PIL import Image

    entries = [(g, g, g) for g in (i / 23 for i in range(24))]
    for colour in dict.fromkeys(to_rgb(c) for c in colours):
        for a in (1.0, 0.8, 0.6, 0.4, 0.2):
            entries.append(tuple(a * v + 1 - a for v in colour))
    flat = [round(v * 255) for rgb in entries[:256] for v in rgb]
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat + flat[-3:] * (256 - len(flat) // 3))
    return palette


def _png(canvas: Any, palette: Any) -> bytes:
    """The canvas as a PNG of ``palette``'s colours, compressed lightly (a frame is
    replaced within half a second)."""
    from PIL import Image

    w, h = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", (w, h), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    image.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE).save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


def _line(text: str) -> Any:
    """One line of text as an output (HTML ``<pre>``: no quotes, monospaced)."""
    from IPython.display import HTML

    return HTML(f"<pre style='margin:0'>{html.escape(text)}</pre>")
