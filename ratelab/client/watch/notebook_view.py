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
run starts, redrawn only when the data outgrow the axes, which then grow generously); each
refresh draws only the lines onto it (matplotlib's blitting) and encodes the PNG at the
lowest zlib level. Measured in ``benchmarks/README.md``.
"""

from __future__ import annotations

import html
import io
import itertools
import time
from typing import Any

from ratelab.client.watch.snapshot import Snapshot, take
from ratelab.client.watch.terminal import format_snapshot

__all__ = ["NotebookView"]

#: Wall seconds between two refreshes (the issue asks for at least two a second).
REFRESH_S = 0.45
_DPI = 60
#: Wall seconds at least between two redraws of the background (axes grown).
REDRAW_S = 4.0
_FINAL_DPI = 90


class NotebookView:
    """Progress-bar compatible (``update_to``, ``close``): a figure updated in place."""

    def __init__(
        self, engines: list[Any], *, label: str, refresh_s: float = REFRESH_S,
        workers: int = 1, rate_per_s: float | None = None,
    ) -> None:  # fmt: skip
        from IPython.display import Image, display

        self.engines = engines
        self.label = label
        self.refresh_s = refresh_s
        self.last = -float("inf")
        self.history: list[Snapshot] = []
        self.frames = 0
        self._fig: Any = None
        self._image = Image
        # the axes start at what the run can reach (counts: the workers; rates: the rate
        # limit), so they rarely grow and the background is rarely redrawn
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

        fig = Figure(figsize=(9.0, 6.0), dpi=_DPI)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.08, hspace=0.12)
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
            ax.legend(loc="upper left", fontsize="small")
        for ax, top in zip((ax_tp, ax_cc, ax_st), self._tops, strict=True):
            ax.set_ylim(0, top)
        ax_tp.set_xlim(0, 2)
        fig.suptitle(f"{self.label} (live)", fontsize="medium")
        self._axes = (ax_tp, ax_cc, ax_st)
        self._state_lines: dict[tuple[str, str], Any] = {}
        self._fig = fig
        self._background: Any = None
        self._redrawn = -float("inf")

    def _grow(self, snap: Snapshot) -> bool:
        """Widen the axes when the data leave them (time to the run's expected end, from
        its progress, and a fifth more; counts to twice the top), so the background (axes,
        ticks, legends) is redrawn only a few times in a run; True if it must be. Between
        two such redraws at least :data:`REDRAW_S` pass (meanwhile the lines are clipped)."""
        if time.monotonic() - self._redrawn < REDRAW_S:
            return False
        changed = False
        ax_tp = self._axes[0]
        t_s = snap.t_s
        if t_s > ax_tp.get_xlim()[1]:
            eta = t_s * snap.total / snap.done if snap.done else 2 * t_s
            ax_tp.set_xlim(0, max(eta, t_s) * 1.2)
            changed = True
        lines = [*self._lines.values(), *self._state_lines.values()]
        for ax in self._axes:
            top = max((max(ln.get_ydata(), default=0) for ln in lines if ln.axes is ax), default=0)
            if top > ax.get_ylim()[1]:
                ax.set_ylim(0, top * 2)
                changed = True
        if changed:
            self._redrawn = time.monotonic()
        return changed

    def _draw(self) -> None:
        snap = take(self.engines)
        if snap is None:
            return
        hist = self.history
        hist.append(snap)
        t = [s.t_s for s in hist]
        pairs = itertools.pairwise(hist)
        rejected = [0.0] + [(b.rejected - a.rejected) / max(b.t_s - a.t_s, 1e-9) for a, b in pairs]
        series = {
            "rate": [s.rate_per_s for s in hist],
            "429": rejected,
            "in_flight": [s.in_flight for s in hist],
            "limiter": [s.waiting_limiter for s in hist],
            "pool": [s.waiting_pool for s in hist],
        }
        for name, y in series.items():
            self._lines[name].set_data(t, y)
        first = self.engines[0] if self.engines else None
        sampler = getattr(getattr(first, "engines", [first])[0], "sampler", None)
        new_line = False
        if sampler is not None:
            ts, keys, values = sampler.series()
            by_key: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
            for ti, k, v in zip(ts, keys, values, strict=True):
                xs, ys = by_key.setdefault(k, ([], []))
                xs.append(ti)
                ys.append(v)
            ax_st = self._axes[2]
            for k, (xs, ys) in by_key.items():
                line = self._state_lines.get(k)
                if line is None:
                    line = self._state_lines[k] = ax_st.plot(
                        [], [], drawstyle="steps-post", label=f"{k[0]}: {k[1]}", animated=True
                    )[0]
                    new_line = True
                line.set_data(xs, ys)
            if new_line:
                ax_st.legend(loc="upper left", fontsize="small")
        self.text.update(_line(f"{self.label}: {format_snapshot(snap)}"))
        fig = self._fig
        canvas = fig.canvas
        if self._grow(snap) or new_line:
            canvas.draw()  # everything but the animated artists
            self._background = canvas.copy_from_bbox(fig.bbox)
        else:
            canvas.restore_region(self._background)
        for artist in (*self._lines.values(), *self._state_lines.values()):
            fig.draw_artist(artist)
        self.handle.update(self._image(data=_png(canvas), format="png"))
        self.frames += 1

    # -- progress-bar interface ----------------------------------------------------------
    def update_to(self, n: int = 0) -> None:
        now = time.monotonic()
        if now - self.last < self.refresh_s:
            return
        self.last = now
        self._draw()

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


def _png(canvas: Any) -> bytes:
    """The canvas as a PNG, compressed lightly (a frame is replaced half a second later)."""
    from PIL import Image

    w, h = canvas.get_width_height(physical=True)
    buf = io.BytesIO()
    Image.frombuffer("RGBA", (w, h), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


def _line(text: str) -> Any:
    """One line of text as an output (HTML ``<pre>``: no quotes, monospaced)."""
    from IPython.display import HTML

    return HTML(f"<pre style='margin:0'>{html.escape(text)}</pre>")
