"""``live=True``: the terminal line, the fallback where output is not a terminal, the
notebook view's frames and final figure (with IPython's display faked), and pacing a
simulation to watch it. The browser test is ``tests/test_browser_live.py``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import ratelab as rl
import ratelab.client.watch.live as live_mod
from ratelab.client.watch.snapshot import Snapshot
from ratelab.client.watch.terminal import format_snapshot
from ratelab.errors import ConfigError

URL = "http://127.0.0.1:9"  # simulated: never contacted


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_terminal_line_of_a_known_snapshot() -> None:
    snap = Snapshot(
        t_s=12.34, done=480, total=2000, rate_per_s=20.0, in_flight=10, waiting_limiter=5,
        waiting_pool=0, statuses={0: 3, 200: 457, 429: 20}, errors=3,
        state={("RateLimit(20)", "level"): 19.0, ("RateLimit(20)", "waiters"): 5.0,
               ("pool", "queued"): 0.5},
    )  # fmt: skip
    assert format_snapshot(snap) == (
        "  12.3 s  480/2000 done  20.0/s now  in flight 10  waiting: limiter 5, pool 0  "
        "200:457 429:20  errors 3  RateLimit(20) level 19 waiters 5  pool queued 0.5"
    )
    assert snap.rejected == 20


def _exp(requests: int = 40) -> rl.Experiment:
    return rl.Experiment(target=URL, requests=requests, workers=10,
                         strategy=rl.RateLimit(20) + rl.ConnectionLimit(3), seed=1)  # fmt: skip


def test_live_in_a_script_falls_back_to_the_progress_bar_when_not_a_terminal(
    tmp_path: Path,
) -> None:
    # A script of its own, its standard error a pipe (a log file, CI output), and tqdm
    # enabled: TQDM_DISABLE (which CI sets, and tqdm reads once, at import) is left out.
    script = tmp_path / "live.py"
    script.write_text(
        "import ratelab as rl\n"
        "with rl.LocalServer() as server:\n"
        "    exp = rl.Experiment(target=server.url, requests=30, workers=5,\n"
        "                        strategy=rl.RateLimit(100))\n"
        "    result = rl.run(exp, live=True)\n"
        "print(len(result.df))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120,
        check=True,
    )  # fmt: skip
    assert proc.stdout.strip() == "30"
    assert "\x1b[" not in proc.stderr  # no control codes in a log
    assert "30/30" in proc.stderr and "req" in proc.stderr  # tqdm's bar instead
    err = io.StringIO()
    exp = rl.Experiment(target=URL, requests=30, workers=5)
    view = live_mod.live_view(exp, live=True, progress=True, engines=[], stream=err)
    assert isinstance(view, live_mod.Progress)
    live_mod.close_view(view, None)


def test_live_in_a_terminal_rewrites_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    monkeypatch.setenv("COLUMNS", "200")  # the terminal's width
    began = time.perf_counter()
    result = rl.simulate(_exp(), progress=False, live=True, live_speed=4.0)
    wall_s = time.perf_counter() - began
    out = tty.getvalue()
    frames = out.split("\r\x1b[K")[1:]
    assert frames, out
    assert out.endswith("\n") and "\x1b[K" in out
    assert frames[-1].startswith("   1.0 s  40/40 done")  # the last state
    assert "RateLimit(20) level" in frames[-1] and "pool in_use" in frames[-1]
    # paced: ~1 virtual second (20 at once, then 20 at 20/s) at 4x: >= ~0.25 s of wall time
    assert result.meta["virtual_s"] > 0.95
    assert wall_s >= result.meta["virtual_s"] / 4 - 0.02
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal: cut, never wrapped
    tty.seek(0)
    tty.truncate()
    rl.simulate(_exp(), progress=False, live=True, live_speed=8.0)
    frames = tty.getvalue().split("\r\x1b[K")[1:]
    assert frames and all(len(f.rstrip("\n")) <= 59 for f in frames)


class _Handle:
    def __init__(self, first: Any) -> None:
        self.shown = [first]

    def update(self, obj: Any) -> None:
        self.shown.append(obj)


def test_the_notebook_view_updates_a_figure_and_leaves_the_final_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import IPython.display

    handles: list[_Handle] = []

    def display(obj: Any, *, display_id: bool = False) -> _Handle:
        assert display_id is True
        handles.append(_Handle(obj))
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(live_mod, "in_kernel", lambda: True)
    result = rl.simulate(_exp(), progress=False, live=True, live_speed=2.0)
    text, handle = handles  # the headline numbers, then the figure
    assert "40/40 done" in text.shown[-1].data
    images = [o for o in handle.shown if isinstance(o, IPython.display.Image)]
    assert len(images) >= 2  # at least one live frame, then the final figure
    assert all(img.data[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert handle.shown[-1] is images[-1]  # the final figure is what stays
    assert images[-1].data != images[-2].data
    assert len(result.df) == 40


def test_live_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="live_speed"):
        rl.simulate(_exp(), progress=False, live=True, live_speed=0)
    with pytest.raises(ConfigError, match="live"):
        rl.simulate(_exp(), progress=False, live="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="a live view follows one process"):
        rl.run(_exp(), live=True, processes=2)


def _fake_display(monkeypatch: pytest.MonkeyPatch) -> list[_Handle]:
    import IPython.display

    handles: list[_Handle] = []

    def display(obj: Any, *, display_id: bool = False) -> _Handle:
        handles.append(_Handle(obj))
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(live_mod, "in_kernel", lambda: True)
    return handles


def test_arun_live_draws_frames_and_the_final_figure(
    server: rl.LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import IPython.display

    handles = _fake_display(monkeypatch)
    exp = rl.Experiment(target=server, requests=30, workers=5, strategy=rl.RateLimit(20))
    result = asyncio.run(rl.arun(exp, live=True))  # fed by the engine's ticker, on its loop
    text, figure = handles
    assert "30/30 done" in text.shown[-1].data
    assert isinstance(figure.shown[-1], IPython.display.Image)  # the final figure stays
    assert len(result.df) == 30 and len(result.state) > 0


def test_the_stop_button_keeps_the_partial_result_and_draws_the_final_figure(
    server: rl.LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a running loop (a kernel) the run goes to a worker thread; the Stop button is
    a KeyboardInterrupt in the waiting thread (``_thread.interrupt_main``, as SIGINT)."""
    import _thread
    import asyncio
    import threading

    import IPython.display

    handles = _fake_display(monkeypatch)
    exp = rl.Experiment(target=server, requests=200, workers=2, strategy=rl.RateLimit(20))

    async def in_a_kernel() -> rl.Result:
        threading.Timer(1.0, _thread.interrupt_main).start()  # ~10 s of work: stopped early
        return rl.run(exp, live=True)

    result = asyncio.run(in_a_kernel())
    assert result.interrupted and (result.df.status == 200).sum() < 200
    _text, figure = handles
    assert isinstance(figure.shown[-1], IPython.display.Image)
    assert figure.shown[-1].data[:8] == b"\x89PNG\r\n\x1a\n"


class _Clock:
    """``time`` for the notebook view: wall and CPU time moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.cpu = 0.0
        self.frame_cpu_s = 0.005  # CPU one frame costs

    def monotonic(self) -> float:
        return self.now

    def thread_time(self) -> float:
        return self.cpu


def _view(monkeypatch: pytest.MonkeyPatch, clock: _Clock, engines: list[Any]) -> Any:
    from ratelab.client.watch import notebook_view

    _fake_display(monkeypatch)
    monkeypatch.setattr(notebook_view, "time", clock)
    view = notebook_view.NotebookView(engines, label="test", workers=10, rate_per_s=20)
    extend = view._extend

    def costly(snap: Any) -> None:  # a frame's work, while the frame's CPU is counted
        clock.cpu += clock.frame_cpu_s
        extend(snap)

    monkeypatch.setattr(view, "_extend", costly)
    # the first call only sets when the first frame is due (FIRST_S later)
    assert view.update_to() == pytest.approx(notebook_view.FIRST_S) and view.frames == 0
    clock.now += notebook_view.FIRST_S
    return view


def _engine_at(t_s: float) -> Any:
    """An engine as the snapshot reads it (started, nothing recorded), at run time t_s."""
    from ratelab.records.store import RecordStore

    class Engine:
        experiment = _exp(10)
        store = RecordStore(10, endpoints=["/"], methods=["GET"])
        sampler = None
        t0 = 0.0
        _send = object()

        def now(self) -> float:
            return t_s

    return Engine()


def test_frames_keep_to_a_deadline_and_say_when_the_next_is_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ratelab.client.watch.notebook_view import REFRESH_S

    clock = _Clock()
    view = _view(monkeypatch, clock, [_engine_at(1.0)])
    assert REFRESH_S == 0.4
    assert view.update_to() == pytest.approx(0.4) and view.frames == 1
    clock.now += 0.3
    assert view.update_to() == pytest.approx(0.1) and view.frames == 1  # not yet due
    clock.now += 0.13  # 30 ms late: drawn, and the next is due 0.8 s after the first
    assert view.update_to() == pytest.approx(0.37) and view.frames == 2
    clock.now += 0.37 + 1e-9  # on time
    assert view.update_to() == pytest.approx(0.4, abs=1e-6) and view.frames == 3
    clock.now += 5.0  # far behind (a long pause): the cadence starts again from now
    assert view.update_to() == pytest.approx(0.4) and view.frames == 4


def test_costly_frames_come_less_often_to_stay_within_their_share_of_a_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ratelab.client.watch.notebook_view import CPU_SHARE

    clock = _Clock()
    view = _view(monkeypatch, clock, [_engine_at(3.0)])  # past the axes' 2 s: they grow
    clock.frame_cpu_s = 0.006  # 6 ms: 1.5% of a core at 2.5 frames a second
    view.update_to()
    view.update_to()  # not yet due
    assert view.interval_s == pytest.approx(0.4)
    clock.now += 0.4
    clock.frame_cpu_s = 0.03  # a slow machine: 30 ms a frame
    assert view.update_to() == pytest.approx(0.03 / CPU_SHARE)  # 1 s: 3% of a core
    assert view.interval_s == pytest.approx(1.0)
    # the first frame redrew the axes: counted apart, and not as a frame's usual cost
    assert view.frames == 2 and view.redraws == 1
    assert view.cpu_s == pytest.approx({"redrawn": 0.006, "blitted": 0.03})


def test_the_view_reads_the_state_incrementally_and_again_after_thinning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ratelab.client.watch.sampler import StateSampler

    level = iter(range(1000))
    sampler = StateSampler([("G", "guard G", lambda: {"level": next(level), "waiters": 2})])
    engine = _engine_at(1.0)
    engine.sampler = sampler
    clock = _Clock()
    view = _view(monkeypatch, clock, [engine])

    def lines() -> dict[str, list[float]]:
        return {q: list(view._state_lines[("G", q)].get_ydata()) for q in ("level", "waiters")}

    for k in range(6):
        sampler.sample(0.05 * k, k)
    view.update_to()
    assert lines() == {"level": [0, 1, 2, 3, 4, 5], "waiters": [2.0] * 6}
    for k in range(6, 9):
        sampler.sample(0.05 * k, k)
    clock.now += 0.4
    view.update_to()  # only the three new samples are read, and appended
    assert view._cursor[2] == 18 and lines()["level"] == list(range(9))
    sampler._thin(8)  # the ticks 0, 2, 4, 6, 8 stay
    assert sampler.generation == 2
    sampler.sample(0.5, 5)
    clock.now += 0.4
    view.update_to()
    assert lines()["level"] == [0, 2, 4, 6, 8, 9]
    xs = list(view._state_lines[("G", "level")].get_xdata())
    assert xs == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 0.5])
    sampler.generation += 1  # as if thinning were under way in the loop's thread
    assert sampler.since(2, 0) is None


def test_the_waiting_thread_feeds_a_view_when_it_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run on a worker thread (a simulation, or any run inside a kernel): the calling
    thread waits until the view's next frame is due, not a whole tick."""
    import ratelab.client.runner as runner_mod

    calls: list[float] = []

    class View:
        def update_to(self, n: int = 0) -> float:
            calls.append(time.perf_counter())
            return 0.02

        def close(self, result: Any) -> None:
            pass

    monkeypatch.setattr(runner_mod, "live_view", lambda *a, **k: View())
    began = time.perf_counter()
    rl.simulate(_exp(), progress=False, live=True, live_speed=1.0)  # ~1 s of virtual time
    wall_s = time.perf_counter() - began
    # every TICK_S (0.1 s) would be at most wall_s / 0.1 + 2 calls
    assert wall_s > 0.9 and len(calls) > wall_s / runner_mod.TICK_S + 2


def test_a_request_finishing_while_the_snapshot_reads_is_never_counted_twice() -> None:
    """The live view reads the run's columns from another thread while the loop goes on:
    here, just as the snapshot reads the send stamps, worker 0 finishes request 0 and sends
    request 10. Ten workers: never more than ten in flight."""
    import math

    from ratelab.client.watch.snapshot import take
    from ratelab.records.store import RecordStore

    store = RecordStore(20, endpoints=["/"], methods=["GET"])
    store.n = 11
    for col in (store.dequeued_s, store.ready_s, store.admitted_s, store.sent_s):
        col[:10] = 0.0
    store.done_s[:] = math.nan

    class Moving:
        """The store, with the loop moving on when the send stamps are read."""

        moved = False

        def __getattr__(self, name: str) -> Any:
            if name == "sent_s" and not self.moved:
                self.moved = True
                store.status[0] = 200
                store.done_s[0] = 0.5
                store.dequeued_s[10] = store.ready_s[10] = store.admitted_s[10] = 0.5
                store.sent_s[10] = 0.5
            return getattr(store, name)

    engine = _engine_at(0.5)
    engine.store = Moving()
    snap = take([engine])
    assert snap is not None
    assert snap.in_flight <= 10 and snap.done == 1 and snap.statuses == {200: 1}


def test_a_new_state_line_redraws_only_its_own_axes_and_shows_its_legend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full redraw (every axis, tick label and legend) is most of what a live view
    costs; a new quantity in the state panel redraws that panel alone."""
    import io as _io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    from ratelab.client.watch.sampler import StateSampler

    sampler = StateSampler([("RateLimit(20)", "guard", lambda: {"level": 0.5, "waiters": 0.0})])
    sampler.sample(0.0, 0)
    engine = _engine_at(0.2)
    engine.sampler = sampler
    view = _view(monkeypatch, _Clock(), [engine])
    full: list[int] = []
    draw = FigureCanvasAgg.draw
    monkeypatch.setattr(FigureCanvasAgg, "draw", lambda self: (full.append(1), draw(self))[1])
    view.update_to()
    assert view.redraws == 1 and not full  # redrawn, but not the whole figure
    legend = view._axes[2].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "RateLimit(20): level", "RateLimit(20): waiters",
    ]  # fmt: skip
    frame = Image.open(_io.BytesIO(view.handle.shown[-1].data)).convert("L")
    box = legend.get_window_extent()
    height = frame.size[1]
    crop = frame.crop((int(box.x0), int(height - box.y1), int(box.x1), int(height - box.y0)))
    assert crop.getextrema()[0] < 100  # the legend's text is in the frame (dark pixels)


@pytest.mark.parametrize("seed", range(5))
def test_the_snapshot_read_from_where_it_stopped_equals_one_read_from_scratch(seed: int) -> None:
    """Rows finish out of order (a slow request holds the first unfinished row back), some
    fail, the store grows for retries: at every step the incremental snapshot (rows below
    the first unfinished one folded into a tally) equals a fresh read of a copy."""
    import copy

    import numpy as np

    from ratelab.client.watch.snapshot import take
    from ratelab.records.store import RecordStore

    rng = np.random.default_rng(seed)
    n = 400
    store = RecordStore(n, endpoints=["/"], methods=["GET"])
    store.add_requests(np.arange(n), np.zeros(n, np.int32), np.zeros(n, np.int32))
    engine = _engine_at(0.0)
    engine.store = store
    started = finished = 0
    for step in range(1, 40):
        t = 0.1 * step
        engine.now = lambda t=t: t  # type: ignore[method-assign]
        for row in range(started, min(started + int(rng.integers(5, 20)), store.n)):
            store.dequeued_s[row] = store.ready_s[row] = store.admitted_s[row] = t
            store.sent_s[row] = t
            started += 1
        open_rows = [r for r in range(started) if np.isnan(store.done_s[r])]
        for row in rng.permutation(open_rows[:25])[: int(rng.integers(0, 15))]:  # oldest first
            store.status[row] = rng.choice([200, 429, 0])
            if store.status[row] == 0:
                store.error[row] = store.error_code("ClientError")
            elif store.status[row] == 429 and store.n < 2 * n:
                store.new_row(int(row), 2)  # a retry: a row at the end (the store grows)
            store.done_s[row] = t - rng.uniform(0, 0.1)
            finished += 1
        fresh = copy.copy(engine)
        fresh.store = copy.deepcopy(store)  # another store: no tally yet
        assert take([engine]) == take([fresh]), f"step {step}"
    assert finished > 100 and store.capacity > n  # the run moved on and the store grew
    from ratelab.client.watch.snapshot import _TALLIES

    assert _TALLIES[store].upto > 50  # and the snapshot read on from a folded prefix


def test_the_first_redraw_widens_the_axes_to_where_the_run_is_heading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No rate limit, so the time axis starts at 2 s. The first frame (0.3 s in) redraws
    anyway (the state lines appear): 400 of 10,000 done at 0.4 s puts the end at 10 s, so
    the axes go to 12 s and 2 x 1,000/s at once, and nothing is redrawn for the rest."""
    import numpy as np

    from ratelab.client.watch import notebook_view
    from ratelab.client.watch.sampler import StateSampler
    from ratelab.records.store import RecordStore

    store = RecordStore(10_000, endpoints=["/"], methods=["GET"])
    store.add_requests(np.arange(10_000), np.zeros(10_000, np.int32), np.zeros(10_000, np.int32))
    sampler = StateSampler([("pool", "transport", lambda: {"in_use": 50.0})])
    sampler.sample(0.0, 0)

    def progress(t_s: float) -> None:  # 1,000 a second, 400 in the first 0.4 s
        k = round(1000 * t_s)
        for col in (store.dequeued_s, store.ready_s, store.admitted_s, store.sent_s):
            col[:k] = 0.0
        store.status[:k] = 200
        store.done_s[:k] = np.linspace(0, t_s, k)

    engine = _engine_at(0.4)
    engine.experiment = rl.Experiment(target=URL, requests=10_000, workers=50)
    engine.store, engine.sampler = store, sampler
    progress(0.4)
    monkeypatch.setattr(notebook_view, "REDRAW_S", 4.0)
    clock = _Clock()
    view = _view(monkeypatch, clock, [engine])
    view.update_to()
    ax_tp = view._axes[0]
    assert ax_tp.get_xlim()[1] == pytest.approx(12.0)
    assert ax_tp.get_ylim()[1] == pytest.approx(2000.0)
    assert view.redraws == 1
    for t_s in (3.0, 6.0, 9.5):  # the run goes on as it began: no more redraws
        progress(t_s)
        engine.now = lambda t_s=t_s: t_s  # type: ignore[method-assign]
        clock.now += 5.0
        view.update_to()
    assert view.frames == 4 and view.redraws == 1
