"""run_processes: one experiment split across OS processes, merged onto one clock."""

from __future__ import annotations

import _thread
import itertools
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ratelab as rl
from ratelab.analysis.result import load
from ratelab.client.guards import Guard
from ratelab.client.processes import PROCESS_COLUMN, run_processes, split_evenly
from ratelab.errors import ConfigError, RatelabError
from ratelab.experiment.strategies import Strategy
from ratelab.records.schema import COLUMNS, TIME_COLUMNS

EPS = 1e-6  # float rounding of the clock shift; real orderings differ by far more


@pytest.fixture(scope="module")
def mp_server() -> Iterator[rl.LocalServer]:
    with rl.LocalServer(latency=rl.Uniform(0.005, 0.015), seed=2, name="test-mp") as s:
        yield s


def _no_children_left(pids: list[int]) -> None:
    assert multiprocessing.active_children() == []
    for pid in pids:  # joined, so reaped: not even a zombie entry remains
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize(
    ("total", "parts", "sizes"),
    [(10, 3, [4, 3, 3]), (9, 3, [3, 3, 3]), (2, 4, [1, 1, 0, 0]), (0, 2, [0, 0]), (7, 1, [7])],
)
def test_split_evenly(total: int, parts: int, sizes: list[int]) -> None:
    assert split_evenly(total, parts) == sizes


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_processes_must_be_a_positive_int(mp_server: rl.LocalServer, bad: object) -> None:
    exp = rl.Experiment(target=mp_server.url, requests=4, workers=4)
    with pytest.raises(ConfigError, match="processes"):
        run_processes(exp, processes=bad)  # type: ignore[arg-type]


def test_processes_may_not_exceed_workers(mp_server: rl.LocalServer) -> None:
    exp = rl.Experiment(target=mp_server.url, requests=4, workers=2)
    with pytest.raises(ConfigError, match="workers=2"):
        run_processes(exp, processes=3)
    with pytest.raises(ConfigError, match="experiment"):
        run_processes("http://127.0.0.1:1", processes=1)  # type: ignore[arg-type]


def test_merged_run_is_one_run_on_one_clock(mp_server: rl.LocalServer, tmp_path) -> None:
    n, procs = 90, 3
    exp = rl.Experiment(
        target=mp_server, requests=n, workers=6, strategy=rl.RateLimit(60), seed=7, name="mp"
    )
    result = run_processes(exp, processes=procs, progress=False)
    df = result.df

    # one row per request, every process present with its share, ids global and unique
    assert len(df) == n
    assert (df["status"] == 200).all(), df["error"].value_counts()
    assert df["request_id"].tolist() == list(range(n))
    assert df.groupby(PROCESS_COLUMN).size().tolist() == split_evenly(n, procs)
    for k, (lo, hi) in enumerate([(0, 30), (30, 60), (60, 90)]):
        assert set(df.loc[df[PROCESS_COLUMN] == k, "request_id"]) == set(range(lo, hi))

    # the documented schema first, `process` (int16) last
    assert list(df.columns) == [*COLUMNS, PROCESS_COLUMN]
    assert df[PROCESS_COLUMN].dtype == np.int16
    for col, (dtype, _, _) in COLUMNS.items():
        assert str(df[col].dtype) == dtype, col

    # one clock: no negative durations, the run starts at 0, the processes overlapped
    t = df[list(TIME_COLUMNS)]
    chain = ["dequeued_s", "ready_s", "admitted_s", "sent_s", "headers_s", "done_s"]
    for a, b in itertools.pairwise(chain):
        assert (t[b] - t[a] >= -EPS).all(), (a, b)
    assert t["scheduled_s"].min() >= -EPS
    assert t["dequeued_s"].min() < 0.05
    firsts = df.groupby(PROCESS_COLUMN)["sent_s"].min()
    assert firsts.max() < 0.3, firsts  # the go barrier: all clients started together

    # the server's view, joined on the global request_id: causally after/before the client
    log = result.server_log
    assert log is not None and len(log) == n
    assert log[PROCESS_COLUMN].dtype == np.int16
    joined = df.merge(log, on=["request_id", "attempt"], suffixes=("", "_server"))
    assert len(joined) == n
    assert (joined[PROCESS_COLUMN] == joined[f"{PROCESS_COLUMN}_server"]).all()
    assert (joined["arrival_s"] >= joined["sent_s"] - EPS).all()
    assert (joined["departure_s"] <= joined["headers_s"] + EPS).all()
    assert (joined["arrival_s"] <= joined["departure_s"]).all()

    # meta: one entry per process, distinct runs and seeds, shifts from the earliest start
    meta = result.meta
    assert meta["processes"] == procs and meta["interrupted"] is False
    pm = meta["process_meta"]
    assert [p["seed"] for p in pm] == [7, 8, 9]
    assert [p["request_offset"] for p in pm] == [0, 30, 60]
    assert len(set(meta["runs"])) == procs
    assert min(p["t0_shift_s"] for p in pm) == 0.0
    assert max(p["t0_shift_s"] for p in pm) < 0.3
    assert result.label == "mp" and result.experiment is exp

    # the usual analysis works, and the file keeps the process column
    assert int(rl.summary(result).iloc[0]["requests"]) == n
    same = load(result.save(tmp_path / "mp.parquet"))
    pd.testing.assert_frame_equal(same.df, df)
    pd.testing.assert_frame_equal(same.server_log, log)
    _no_children_left([p["pid"] for p in pm])


#: How long after its loop's start a child may take its first state sample: when the
#: sampler task first runs, after every worker's first step (a few ms on an idle machine;
#: generous for two busy cores).
FIRST_SAMPLE_S = 0.5


def test_state_interval_is_checked_before_any_process_starts(mp_server: rl.LocalServer) -> None:
    exp = rl.Experiment(target=mp_server, requests=4, workers=2)
    for bad in (0, -0.1, float("nan"), "fast", True):
        with pytest.raises(ConfigError, match="state_interval_s"):
            rl.run(exp, processes=2, progress=False, state_interval_s=bad)
        with pytest.raises(ConfigError, match="state_interval_s"):
            run_processes(exp, processes=2, progress=False, state_interval_s=bad)
    assert multiprocessing.active_children() == []


def test_every_process_keeps_its_state_on_the_merged_clock(
    mp_server: rl.LocalServer, tmp_path: Path
) -> None:
    interval_s = 0.25  # not the default 0.05: the children must have been given it
    exp = rl.Experiment(target=mp_server, requests=60, workers=20, strategy=rl.RateLimit(20))
    result = rl.run(exp, processes=2, progress=False, state_interval_s=interval_s)
    df, state, meta = result.df, result.state, result.meta
    assert (df["status"] == 200).all()
    assert list(state.columns) == ["t_s", "guard", "quantity", "value", PROCESS_COLUMN]
    assert state[PROCESS_COLUMN].dtype == np.int16
    assert set(state[PROCESS_COLUMN]) == set(df[PROCESS_COLUMN]) == {0, 1}
    assert state["t_s"].is_monotonic_increasing
    assert set(state["guard"].astype(str)) == {"RateLimit(20)", "pool"}
    for k in (0, 1):
        own = state[state[PROCESS_COLUMN] == k]
        shift = meta["process_meta"][k]["t0_shift_s"]
        t = own["t_s"]
        # its first sample: at its own start on the merged clock (never before it)
        assert shift - EPS <= t.min() <= shift + FIRST_SAMPLE_S, (t.min(), shift)
        assert 0 <= t.min() and t.max() <= meta["wall_s"]
        # its last: when its run ended, after its last request was done (one clock)
        assert t.max() >= df.loc[df[PROCESS_COLUMN] == k, "done_s"].max() - EPS
        # on its grid of interval_s (a loaded loop skips ticks; never more samples): a
        # first sample when the sampler starts (off the grid, a few ms in), the grid's
        # ticks (at most span / interval_s + 1 fit in the span) and a last one at the end
        level = own[own["quantity"] == "level"]
        span = level["t_s"].max() - level["t_s"].min()
        assert len(level) <= span / interval_s + 3, (len(level), span)
        # RateLimit(20) per process: each its own bucket, filled by its own burst of 20
        # (10 workers: two rounds), never above 20 though the two sent 40 at once
        assert 10 < level["value"].max() <= 20 + EPS
    back = load(result.save(tmp_path / "state.parquet"))
    pd.testing.assert_frame_equal(back.state, state)


def test_interrupt_returns_partial_result_and_reaps(mp_server: rl.LocalServer) -> None:
    """KeyboardInterrupt in the parent -> SIGINT to each child -> partial, merged Result."""
    n = 400  # 2 processes x RateLimit(10): ~20 s if nobody stops it
    exp = rl.Experiment(target=mp_server, requests=n, workers=4, strategy=rl.RateLimit(10))
    before = len(mp_server.log())
    finished = threading.Event()
    interrupted_at: list[float] = []

    def interrupt_once_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not finished.is_set():
            new = mp_server.log().iloc[before:]
            if len(new) >= 6 and new["run"].nunique() == 2:  # both children are sending
                if not finished.is_set():
                    interrupted_at.append(time.monotonic())
                    _thread.interrupt_main()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=interrupt_once_running, daemon=True)
    thread.start()
    try:
        result = run_processes(exp, processes=2, progress=False)
    finally:
        finished.set()
        thread.join()
    returned_at = time.monotonic()
    # It stopped soon after the interrupt, long before the ~20 s the run needs. Timed from
    # the interrupt, not from the call: starting two fresh interpreters (imports, engines)
    # comes before it and is no part of stopping; with both cores loaded it took 4-7 s
    # alone, and the whole call once took 15.9 s. From the interrupt to the merged Result
    # (children cancel, save and exit; the parent reads and merges): 0.3 s quiet, 0.2-0.8 s
    # with both cores busy. 10 s leaves room for a far busier machine and is still half of
    # what a run that ignored the interrupt would take.
    assert len(interrupted_at) == 1
    assert returned_at - interrupted_at[0] < 10.0
    df = result.df
    assert result.interrupted and result.meta["interrupted"] is True
    assert len(df) == n and df["request_id"].tolist() == list(range(n))
    cancelled = int((df["error"] == "CancelledError").sum())
    ok = int((df["status"] == 200).sum())
    assert ok >= 6 and cancelled > 0 and ok + cancelled == n
    assert set(df[PROCESS_COLUMN]) == {0, 1}
    state = result.state  # what each child sampled up to the interrupt is kept
    for k in (0, 1):
        own = state[state[PROCESS_COLUMN] == k]
        assert len(own) > 0
        assert own["t_s"].max() >= df.loc[df[PROCESS_COLUMN] == k, "sent_s"].max() - EPS
    _no_children_left([p["pid"] for p in result.meta["process_meta"]])


@dataclass(frozen=True)
class ExplodingStrategy(Strategy):
    """A strategy whose guard cannot be built: the child's run fails outright."""

    def guard(self) -> Guard:
        raise RuntimeError("kaboom in the child")


def test_a_failing_child_raises_with_its_traceback(mp_server: rl.LocalServer) -> None:
    exp = rl.Experiment(target=mp_server, requests=4, workers=2, strategy=ExplodingStrategy())
    with pytest.raises(RatelabError, match=r"(?s)process \d of 2 failed.*kaboom in the child"):
        run_processes(exp, processes=2, progress=False)
    _no_children_left([])


def test_run_with_processes_delegates_and_records_it(server) -> None:
    import ratelab as rl

    exp = rl.Experiment(target=server, requests=12, workers=4, seed=1)
    result = rl.run(exp, processes=2, progress=False)
    assert result.experiment.processes == 2
    assert sorted(result.df.request_id) == list(range(12))
    assert set(result.df.process) == {0, 1}
    via_field = rl.run(exp.replace(processes=2), progress=False)
    assert set(via_field.df.process) == {0, 1}
    with pytest.raises(rl.ConfigError, match="processes"):
        rl.Experiment(target=server, processes=0)


def test_processes_from_a_script_on_standard_input_say_why(tmp_path) -> None:
    # issue 17 item 11: every spawned child died at start ("exited with code 1")
    import subprocess
    import sys

    script = (
        "import ratelab as rl\n"
        "exp = rl.Experiment(target='http://127.0.0.1:9', requests=8, workers=4)\n"
        "try:\n"
        "    rl.run(exp, processes=4, progress=False)\n"
        "except rl.ConfigError as e:\n"
        "    print('PARAMETER', e.parameter)\n"
        "    print(e)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root}
    proc = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, cwd=tmp_path,
        env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "PARAMETER processes" in proc.stdout
    assert "'<stdin>'" in proc.stdout and "Save the script to a file" in proc.stdout


def _kill_child_when_busy(server: rl.LocalServer, before: int, k: int, sig: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(server.log()) - before >= 8:  # every child is sending
            for p in multiprocessing.active_children():
                if p.name == f"ratelab-process-{k}":
                    os.kill(p.pid, sig)  # type: ignore[arg-type]
                    return
        time.sleep(0.02)


def test_a_child_killed_with_sigkill_leaves_a_partial_result(
    mp_server: rl.LocalServer, tmp_path: Path
) -> None:
    # issue 17 item 3: RatelabError, and the healthy children's records thrown away
    import signal

    n = 200  # 4 processes x RateLimit(10): 5 s for everyone, so the kill lands mid-run
    exp = rl.Experiment(target=mp_server, requests=n, workers=8, strategy=rl.RateLimit(10))
    before = len(mp_server.log())
    killer = threading.Thread(
        target=_kill_child_when_busy, args=(mp_server, before, 2, signal.SIGKILL), daemon=True
    )
    killer.start()
    result = run_processes(exp, processes=4, progress=False)
    killer.join()
    df = result.df
    assert result.meta["lost_processes"] == [2]
    assert "killed by signal 9" in result.meta["lost_reasons"]["2"]
    assert len(df) == n and df["request_id"].tolist() == list(range(n))
    lost = df[df[PROCESS_COLUMN] == 2]
    assert len(lost) == 50 and (lost["error"] == "ProcessLost").all()
    assert lost["sent_s"].isna().all()
    healthy = df[df[PROCESS_COLUMN] != 2]
    assert len(healthy) == 150 and (healthy["status"] == 200).all()
    assert not result.interrupted
    _no_children_left([p["pid"] for p in result.meta["process_meta"]])
    back = load(result.save(tmp_path / "lost.parquet"))
    assert back.meta["lost_processes"] == [2] and (back.df["error"] == "ProcessLost").sum() == 50


@dataclass(frozen=True)
class SlowStart(Strategy):
    """Process 1 of a fleet hangs while starting (in ``warm_up``, before it reports ready),
    after leaving a file in ``marker_dir``: the moment to kill it."""

    marker_dir: str = ""

    def warm_up(self) -> None:
        if multiprocessing.current_process().name == "ratelab-process-1":
            (Path(self.marker_dir) / "starting").touch()
            time.sleep(600)


def test_a_child_lost_while_starting_does_not_hold_back_the_others(
    mp_server: rl.LocalServer, tmp_path: Path
) -> None:
    import signal

    exp = rl.Experiment(target=mp_server, requests=10, workers=2, strategy=SlowStart(str(tmp_path)))

    def kill_when_starting() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (tmp_path / "starting").exists():
            time.sleep(0.02)
        for p in multiprocessing.active_children():
            if p.name == "ratelab-process-1":
                os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]

    killer = threading.Thread(target=kill_when_starting, daemon=True)
    killer.start()
    started = time.monotonic()
    result = run_processes(exp, processes=2, progress=False)
    killer.join()
    assert time.monotonic() - started < 60  # not the 120 s start-up timeout
    df = result.df
    assert result.meta["lost_processes"] == [1]
    assert (df[df[PROCESS_COLUMN] == 0]["status"] == 200).all()
    assert (df[df[PROCESS_COLUMN] == 1]["error"] == "ProcessLost").sum() == 5
    assert len(df) == 10
