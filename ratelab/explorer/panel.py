"""``rl.explore``: sliders over an experiment; every change re-simulates and redraws in place.

    server = rl.LocalServer(latency=rl.Fixed(0.2), rate_limit=rl.ServerRateLimit(40))
    exp = rl.Experiment(target="http://127.0.0.1:8080", requests=1000, workers=50, seed=1,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(10))
    explorer = rl.explore(exp, server, rate=(5, 60), connections=(1, 50),
                          algorithm=["fixed_window", "sliding_window", "token_bucket", "gcra"])
    explorer                 # the panel: move a slider, the figure follows
    explorer.result          # the latest Result (the setting on screen)
    explorer.set(rate=30)    # the same from code: waits for the new Result and returns it

How a change travels: the widget's observer (the kernel's thread) bumps a generation
counter and leaves the setting in a one-slot mailbox; one worker thread takes the newest
setting, simulates it (``rl.simulate``, virtual time, no progress bar), draws the figure to
PNG bytes and, if no newer change arrived meanwhile, puts the bytes into an ``Image``
widget and the Result into :attr:`Explorer.result`. A change that arrives while one is
computed supersedes it: the older result is dropped, the settings in between are never
computed, so nothing queues up behind a fast-moving slider.

Why an ``Image`` widget of PNG bytes (not an ``Output`` widget with ``clear_output(wait=
True)`` and ``display(fig)``): setting ``Image.value`` sends the bytes as a binary buffer
on the widget's comm and the front end swaps the ``<img>`` source in place, so the page
keeps its layout and the old figure stays until the new one is decoded (no flicker); an
Output widget clears and re-inserts an output area (a layout jump in JupyterLab 4), sends
base64 text (a third larger), and capturing ``display`` from a worker thread into it is
fragile. ipympl (a live canvas) is not needed for a figure redrawn whole on each change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ratelab.errors import ConfigError
from ratelab.experiment.experiment import Experiment
from ratelab.explorer.controls import (
    Control,
    ServerConfig,
    apply_setting,
    default_controls,
    ipywidgets,
    make_controls,
    setting_label,
)
from ratelab.explorer.figure import Canvas, Line

if TYPE_CHECKING:
    from ratelab.analysis.result import Result
    from ratelab.server.local import LocalServer

__all__ = ["Explorer", "explore"]

#: how many computed settings' Results an explorer keeps (a 2,000-row Result: ~0.3 MB)
_KEEP_RESULTS = 64

#: what turns an Experiment and a server description into a Result (default: rl.simulate)
Simulate = Callable[[Experiment, "LocalServer | None"], "Result"]


def _simulate(experiment: Experiment, server: LocalServer | None) -> Result:
    from ratelab.simulation.runner import simulate

    return simulate(experiment, server, progress=False)


@dataclass(frozen=True)
class Frame:
    """One computed setting: what it ran, its Result, its figure and how long it took."""

    generation: int
    setting: dict[str, Any]
    experiment: Experiment
    server: ServerConfig | None
    result: Result
    png: bytes
    changed_at: float  # time.perf_counter() when the change arrived
    simulate_s: float
    draw_s: float
    fresh: bool = True  # simulated now (False: a Result kept from before)


def explore(
    experiment: Experiment,
    server: LocalServer | None = None,
    *,
    simulate: Simulate | None = None,
    **controls: object,
) -> Explorer:
    """An interactive panel over ``experiment``: each control (a slider, buttons or a
    drop-down) changes one Experiment or server field, and every change re-simulates the
    run on the virtual clock and redraws the figure in place.

    ``controls``: ``name=(low, high)`` (or ``(low, high, step)``) for a slider,
    ``name=[choice, ...]`` for buttons or a drop-down. Names: Experiment fields
    (``workers``, ``requests``, ``timeout_s``, ``seed``; any field as a list, e.g.
    ``strategy=[rl.RateLimit(20), rl.TokenBucket(20, burst=5)]``), server fields
    (``latency_s`` for a fixed latency, ``max_concurrency``; ``latency`` and ``rate_limit``
    as lists) and the shorthands ``rate`` (the RateLimit's ``max_rate``), ``connections``
    (the ConnectionLimit's ``limit``) and ``algorithm`` (the server rate limit's). None
    given: ``workers``, plus ``rate``, ``connections``, ``latency_s`` and ``algorithm``
    where the strategy and server have them. A bad control raises
    :class:`~ratelab.errors.ConfigError` naming it, before anything is drawn.

    ``server`` is a :class:`~ratelab.LocalServer` describing the server (never started by
    the simulation; "run it for real" starts a fresh one with the same configuration on
    127.0.0.1). ``simulate``: what turns ``(experiment, server)`` into a Result (default
    ``rl.simulate(..., progress=False)``; e.g. ``functools.partial(rl.simulate,
    clients=2, progress=False)``).
    """
    return Explorer(experiment, server, controls, simulate=simulate)


class Explorer:
    """The panel made by :func:`explore`; display it in a notebook cell.

    :attr:`result` is the latest Result drawn, :attr:`controls` maps each name to its
    widget, :meth:`pin` keeps the current setting as a grey ghost line, :meth:`set` changes
    controls from code and waits, :meth:`to_experiment` / :attr:`server` hand back the
    setting, and :meth:`run_real` (the "run it for real" button) runs it against a
    LocalServer and draws it over the simulation.
    """

    def __init__(
        self,
        experiment: Experiment,
        server: LocalServer | None = None,
        controls: Mapping[str, object] | None = None,
        *,
        simulate: Simulate | None = None,
        figsize: tuple[float, float] = (11.0, 5.6),
        dpi: float = 80.0,
    ) -> None:
        from ratelab.server.local import LocalServer
        from ratelab.simulation.runner import check_simulation

        if not isinstance(experiment, Experiment):
            raise ConfigError("experiment", experiment, "must be an rl.Experiment(...)")
        if server is not None and not isinstance(server, LocalServer):
            raise ConfigError(
                "server", server, "must be a rl.LocalServer(...) describing the server, or None"
            )
        check_simulation(experiment, server, 0.0)
        specs = dict(controls) if controls else default_controls(experiment, server)
        self._specs: dict[str, Control] = make_controls(experiment, server, specs)
        self._base = experiment
        self._base_server = ServerConfig.of(server)
        self._simulate: Simulate = simulate if simulate is not None else _simulate
        self._canvas = Canvas(figsize=figsize, dpi=dpi)  # drawn on by one thread at a time
        self._cv = threading.Condition()
        self._generation = 0
        self._pending: tuple[int, dict[str, Any], float] | None = None
        self._busy = False
        self._closed = False
        self._frame: Frame | None = None
        self._error: BaseException | None = None
        self._pins: list[Line] = []
        #: the Results of the settings computed so far (the newest _KEEP_RESULTS): going
        #: back to a setting redraws it without simulating it again
        self._results: dict[tuple[tuple[str, str], ...], Result] = {}
        self._real: tuple[dict[str, Any], Result] | None = None
        self._real_thread: threading.Thread | None = None
        self.real_error: BaseException | None = None
        #: (generation, seconds from the change to the new figure) of every figure drawn
        self.latencies: list[tuple[int, float]] = []
        self._build_widgets()
        # the first setting, computed here: a bad experiment fails now, and .result is set
        setting = self.setting
        frame = self._compute(0, setting, time.perf_counter())
        self._publish(frame)
        self._worker = threading.Thread(target=self._work, name="ratelab-explore", daemon=True)
        self._worker.start()
        for widget in self.controls.values():
            widget.observe(self._changed, names="value")

    # -- widgets ---------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        w = ipywidgets()
        self.controls: dict[str, Any] = {n: c.widget() for n, c in self._specs.items()}
        self._image = w.Image(format="png", layout=w.Layout(width="auto", max_width="100%"))
        self._status = w.HTML()
        self._pin_button = w.Button(description="Pin", icon="thumb-tack",
                                    tooltip="keep this setting as a grey ghost line")  # fmt: skip
        self._clear_button = w.Button(description="Clear pins", icon="eraser")
        self._real_button = w.Button(
            description="Run it for real", icon="play", button_style="warning",
            tooltip="run this setting against a LocalServer on 127.0.0.1, in real time",
            layout=w.Layout(width="auto"),
        )  # fmt: skip
        self._pin_button.on_click(lambda _b: self.pin())
        self._clear_button.on_click(lambda _b: self.clear_pins())
        self._real_button.on_click(lambda _b: self.run_real())
        buttons = w.HBox([self._pin_button, self._clear_button, self._real_button])
        self.panel = w.VBox(
            [w.VBox(list(self.controls.values())), buttons, self._status, self._image],
            layout=w.Layout(width="100%"),
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The panel, plus the figure on screen as a PNG for what cannot show widgets
        (GitHub, nbconvert, an untrusted notebook). JupyterLab prefers the widget."""
        import base64

        bundle = dict(self.panel._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = repr(self)
        if self._frame is not None:
            bundle["image/png"] = base64.b64encode(self._frame.png).decode("ascii")
        return bundle

    def __repr__(self) -> str:
        return f"Explorer({setting_label(self.setting)})"

    # -- the setting -----------------------------------------------------------------------

    @property
    def setting(self) -> dict[str, Any]:
        """The controls' values now (name -> value)."""
        return {name: widget.value for name, widget in self.controls.items()}

    @property
    def result(self) -> Result:
        """The Result of the setting on screen (the latest one computed)."""
        assert self._frame is not None  # set in __init__
        return self._frame.result

    @property
    def shown_setting(self) -> dict[str, Any]:
        """The setting whose Result and figure are on screen."""
        assert self._frame is not None
        return dict(self._frame.setting)

    @property
    def png(self) -> bytes:
        """The figure on screen, as PNG bytes."""
        return bytes(self._image.value)

    @property
    def server(self) -> LocalServer | None:
        """A new LocalServer (not started) with the server configuration on screen."""
        assert self._frame is not None
        return None if self._frame.server is None else self._frame.server.build()

    def to_experiment(self) -> Experiment:
        """The Experiment on screen: what the student settled on."""
        assert self._frame is not None
        return self._frame.experiment

    def to_script(self) -> str:
        """The setting on screen as a standalone aiohttp + aiolimiter script, to copy
        (:meth:`ratelab.Experiment.to_script`; a strategy it cannot write is a ConfigError)."""
        return self.to_experiment().to_script()

    # -- changes, the worker and supersession ----------------------------------------------

    def _changed(self, _change: object = None) -> None:
        """A control moved (called by the widget's observer): leave the setting for the
        worker, superseding any setting not yet taken."""
        now = time.perf_counter()
        setting = self.setting
        with self._cv:
            self._generation += 1
            self._pending = (self._generation, setting, now)
            self._cv.notify_all()

    def _work(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                generation, setting, changed_at = self._pending  # type: ignore[misc]
                self._pending = None
                self._busy = True
            frame: Frame | None = None
            error: BaseException | None = None
            try:
                frame = self._compute(generation, setting, changed_at)
            except Exception as e:  # shown in the panel, raised by wait()
                error = e
            with self._cv:
                latest = generation == self._generation
                if latest:
                    self._error = error
            try:
                if latest:  # superseded results are dropped: only the newest is drawn
                    if frame is not None:
                        self._publish(frame)
                    else:
                        self._status.value = _error_html(error)
            finally:
                with self._cv:  # busy until drawn: wait() returns with the figure on screen
                    self._busy = False
                    self._cv.notify_all()

    def _compute(self, generation: int, setting: dict[str, Any], changed_at: float) -> Frame:
        exp, config = apply_setting(self._base, self._base_server, setting)
        started = time.perf_counter()
        key = tuple((name, repr(value)) for name, value in setting.items())
        result = self._results.get(key)  # a redraw (pin, real run) or a setting seen before
        fresh = result is None
        if result is None:
            result = self._simulate(exp, None if config is None else config.build())
            if len(self._results) >= _KEEP_RESULTS:
                self._results.pop(next(iter(self._results)))  # the oldest
            self._results[key] = result
        simulated = time.perf_counter()
        lines = [*self._pins, Line(result, setting_label(setting), "current")]
        real = self._real
        if real is not None and real[0] == setting:
            lines.append(Line(real[1], "real run", "real"))
        png = self._canvas.render(lines)
        return Frame(generation, dict(setting), exp, config, result, png, changed_at,
                     simulated - started, time.perf_counter() - simulated, fresh)  # fmt: skip

    def _publish(self, frame: Frame) -> None:
        self._frame = frame
        self._image.value = frame.png
        self._status.value = _status_html(frame, self._real_note(frame.setting))
        self.latencies.append((frame.generation, time.perf_counter() - frame.changed_at))

    def _redraw(self) -> None:
        """Draw the setting on screen again (after a pin or a real run), from the worker."""
        self._changed()

    def wait(self, timeout_s: float = 60.0) -> Result:
        """Block until every change so far is computed and drawn; return :attr:`result`.
        Raises what the latest computation raised (e.g. a ConfigError), TimeoutError if
        it takes longer than ``timeout_s``."""
        with self._cv:
            done = self._cv.wait_for(lambda: self._pending is None and not self._busy, timeout_s)
            if not done:
                raise TimeoutError(f"the explorer did not finish within {timeout_s} s")
            if self._error is not None:
                raise self._error
        return self.result

    def set(self, **values: object) -> Result:
        """Move controls from code (``explorer.set(rate=30, connections=5)``), wait for the
        new figure, and return its Result. An unknown name raises ConfigError."""
        for name, value in values.items():
            if name not in self.controls:
                raise ConfigError(name, value, f"is not one of this explorer's controls: "
                                  f"{', '.join(self.controls)}")  # fmt: skip
            spec = self._specs[name]
            if spec.choices is not None:
                if not any(value == c for c in spec.choices):
                    raise ConfigError(name, value, f"must be one of {list(spec.choices)!r}")
            elif not (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and spec.low <= value <= spec.high  # type: ignore[operator]
            ):
                raise ConfigError(name, value, f"must be a number in {spec.low}..{spec.high}")
        for name, value in values.items():
            self.controls[name].value = value
        return self.wait()

    # -- pins and the real run -------------------------------------------------------------

    def pin(self, label: str | None = None) -> str:
        """Keep the setting on screen as a grey ghost line (labelled by the setting, or
        ``label``); returns the label."""
        assert self._frame is not None
        label = label or f"pinned: {setting_label(self._frame.setting)}"
        self._pins.append(Line(self._frame.result, label, "ghost"))
        self._redraw()
        return label

    def clear_pins(self) -> None:
        """Remove every ghost line."""
        self._pins.clear()
        self._redraw()

    @property
    def pins(self) -> list[str]:
        """The labels of the pinned settings."""
        return [p.label for p in self._pins]

    @property
    def real_result(self) -> Result | None:
        """The latest real run's Result (None: none yet)."""
        return None if self._real is None else self._real[1]

    def run_real(self, *, wait: bool = False) -> threading.Thread:
        """Run the setting on screen for real ("run it for real"): a fresh LocalServer with
        the same configuration on 127.0.0.1, ``rl.run`` in real time (on a thread: the
        panel stays live), then draw the real run over the simulation as long as that
        setting is on screen. ``wait=True`` returns once it is drawn."""
        if self._real_thread is not None and self._real_thread.is_alive():
            if wait:
                self._real_thread.join()
            return self._real_thread
        assert self._frame is not None
        frame = self._frame
        self.real_error = None
        self._real_button.disabled = True
        self._real_button.description = (
            f"Running for real (about {frame.result.meta.get('virtual_s', 0):.0f} s)…"
        )

        def target() -> None:
            from ratelab.client.runner import run

            try:
                config = frame.server or ServerConfig.empty()
                with config.build() as live:
                    result = run(frame.experiment.replace(target=live.url), progress=False)
                self._real = (dict(frame.setting), result)
                self._redraw()
                self.wait()
            except Exception as e:  # shown in the panel and kept in real_error
                self.real_error = e
                self._status.value = _error_html(e, "the real run failed")
            finally:
                self._real_button.disabled = False
                self._real_button.description = "Run it for real"

        thread = threading.Thread(target=target, name="ratelab-explore-real", daemon=True)
        self._real_thread = thread
        thread.start()
        if wait:
            thread.join()
        return thread

    def _real_note(self, setting: dict[str, Any]) -> str:
        if self._real is None or self._real[0] != setting:
            return ""
        return _numbers(self._real[1], "real run")

    def close(self) -> None:
        """Stop the worker thread and close the widgets."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for widget in self.controls.values():
            widget.unobserve(self._changed, names="value")
        self.panel.close()


def _numbers(result: Result, label: str) -> str:
    from ratelab.analysis.metrics import summary

    s = summary(result).iloc[0]
    refused = int((result.df["status"] == 429).sum())
    return (
        f"<b>{label}</b>: steady {s['steady_rate_per_s']:.1f}/s · mean in flight "
        f"{s['mean_in_flight']:.1f} · latency p50 {s['latency_p50_s'] * 1000:.0f} ms · "
        f"limiter wait {s['limiter_wait_mean_s'] * 1000:.0f} ms · pool wait "
        f"{s['pool_wait_mean_s'] * 1000:.0f} ms · 429s {refused}"
    )


def _status_html(frame: Frame, real_note: str) -> str:
    virtual_s = frame.result.meta.get("virtual_s", float("nan"))
    how = f"simulated in {frame.simulate_s:.2f} s" if frame.fresh else "simulated before"
    timing = (
        f"<span style='color:#777'>{len(frame.result.df):,} attempts, {virtual_s:.1f} s "
        f"{how}, drawn in {frame.draw_s:.2f} s</span>"
    )
    lines = [_numbers(frame.result, "simulated"), timing]
    if real_note:
        lines.insert(1, real_note)
    return "<div style='line-height:1.5'>" + "<br>".join(lines) + "</div>"


def _error_html(error: BaseException | None, what: str = "this setting failed") -> str:
    import html

    text = html.escape(f"{type(error).__name__}: {error}")
    return f"<div style='color:#b00020'><b>{what}</b>: {text}</div>"
