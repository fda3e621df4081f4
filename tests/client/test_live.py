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
