"""Many clients, one target: an Experiment split across N operating-system processes.

    with rl.LocalServer(name="many") as server:
        exp = rl.Experiment(target=server, requests=400, workers=40, strategy=rl.RateLimit(20))
        result = run_processes(exp, processes=4)   # four clients, each with its own RateLimit
        result.df.groupby("process").size()        # one frame; `process` says who sent what
        rl.plot_state(result)                      # each process's own bucket, one clock

Why: a limiter inside one process knows nothing of the others. Four processes, each with
``RateLimit(20)``, send 80 requests/s; ``rl.SharedRateLimit`` keeps one count in Redis so
the four together send 20/s. This module runs such fleets and merges what they recorded
into one :class:`~ratelab.analysis.result.Result`.

How the work is split (process ``k`` of ``N``):

* ``requests`` and ``workers`` are divided as evenly as possible, the first ``total % N``
  processes getting one more (``requests=10, N=3`` -> 4, 3, 3). Every process needs a
  worker, so ``processes`` may not exceed ``workers``. The strategy applies in every
  process as written: ``RateLimit(20)`` is 20/s *per process*.
* ``seed`` -> ``seed + k`` (None stays None: each process draws its own).
* An open-loop ``arrivals`` rate is scaled by the process's share of the requests, so all
  processes finish arriving together (independent Poisson streams add up to the original
  Poisson rate; ``Constant`` streams are in phase: the k-th arrivals coincide).
* A :class:`~ratelab.server.local.LocalServer` target is started in this (the parent) process if
  it is not running, and the children get its URL; its log becomes ``server_log``.

Each child is a fresh interpreter (``multiprocessing`` "spawn" context: safe with threads,
in Jupyter and on every OS). It rebuilds the experiment from ``Experiment.to_dict()`` (a
custom Strategy subclass must live in an importable module; one defined in a notebook
cannot reach the children), builds its :class:`~ratelab.client.engine.Engine`, reports ready and
waits for the parent's go, so all clients start together. It runs the engine under an
``asyncio.Runner`` and writes its Result to a Parquet file in a temporary directory
(``Result.save``: frames can be large, and a file avoids pushing them through a pipe);
the parent reads the files back and merges them. Scripts that call this must guard
their top level with ``if __name__ == "__main__":`` (spawn re-imports the main module).

The merged frame:

* ``request_id`` is global: process ``k``'s ids are offset by the requests before its slice
  (0..requests-1 overall, unique); a new ``process`` column (int16), the LAST column, says
  which process sent the attempt (``ratelab.records.store.COLUMNS`` stay first, in order).
* All times are on ONE clock. Every child's loop clock is ``time.monotonic()``, which on
  one machine is the same clock in every process; the engine stamps its loop's start as
  ``meta["t0_monotonic"]``. Process ``k``'s times are shifted by ``t0_k - min(t0)``, so the
  merged run starts at 0 and times compare across processes exactly. (Across machines the
  monotonic clocks are unrelated: there only durations compare, and aligning runs needs
  the wall clock — ``meta["started_at"]``, NTP-synchronised, good to a few ms.)
* ``state`` (``result.state``, the limiters' and the pools' state; see
  :mod:`ratelab.client.watch.sampler`): every child's engine samples its own guards and
  its own pool every ``state_interval_s`` (``rl.run``'s, passed to every child; None:
  off) on its own clock; the parent shifts each child's ``t_s`` by that child's
  ``t0_k - min(t0)``, the very shift of its records' times, and adds a ``process`` column
  (int16, the LAST column, as the records'). Rows in ``t_s`` order. The column is there
  exactly when the run was split (``processes > 1``), even with no rows: a one-process
  run's state has the four columns only. A child's first sample is taken when its
  sampler first runs, just after its workers' first step (a few ms after its ``t0``), so
  process ``k``'s first row lies at ``t0_shift_s`` plus that. Each process's state is its
  OWN: ``RateLimit(20)`` in each of 4 processes is 4 buckets, each bounded by 20, sampled
  on 4 grids (so rows are not summed). A :class:`~ratelab.client.shared_limit.SharedRateLimit`
  is one count in Redis that no process holds: its guard reports no state (reading the
  count would cost a Redis call per sample), so its processes show only their pools. A lost
  process has no state rows (they died with it).
* ``server_log`` (LocalServer targets): ``server.log(t0=min(t0))`` restricted to the
  children's run tokens, with ``process`` added (from the token) and ``request_id`` made
  global like the client frame's, so the two join on ``request_id`` + ``attempt``.
* ``meta``: the children's versions and platform, ``processes``, ``t0_monotonic`` (the
  earliest), ``interrupted``, ``wall_s`` (first start to last finish), ``runs`` (the run
  tokens, by process) and ``process_meta`` (per process: pid, run token, loop, requests,
  workers, seed, request offset, t0 and its shift, wall time, interrupted).

Progress: one tqdm bar for all processes, fed by a shared array of per-process counts that
each child's engine updates every 0.1 s (its ``on_tick``).

Interrupt (Ctrl-C, the kernel's Stop button): the parent sends SIGINT to every child (once:
a child ignores repeats, e.g. the terminal's own SIGINT to the process group); each child
cancels its run, which keeps what it recorded (its state samples too, with a last one
taken as it stops), unfinished requests marked ``CancelledError``; the merged Result has
``meta["interrupted"] = True``.

A lost child: one that dies without a word (SIGKILL, the OOM killer) or hands in nothing
(interrupted while still starting) does not lose the run. The others go on (or start
without it) and the merged Result keeps their rows; the lost process is listed in
``meta["lost_processes"]`` (why, in ``meta["lost_reasons"]``), and each of its requests is
one row with ``error`` = ``"ProcessLost"`` (:data:`ERROR_PROCESS_LOST`) and no times: what
it recorded died with it. If no child has anything, KeyboardInterrupt (interrupted) or
RatelabError is raised. A child that *raises* still ends the run with RatelabError and
its traceback. A second KeyboardInterrupt in the parent stops waiting. Children are always
joined; one that does not finish in time is terminated, then killed: no process is left
behind. Signals are POSIX: on Windows an interrupt ends the children without their
partial records.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing
import os
import queue
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ratelab._validate import integer
from ratelab.analysis.files import empty_state
from ratelab.analysis.result import Result, load
from ratelab.client.loops import loop_factory
from ratelab.client.progress import Progress
from ratelab.client.server_log import fetch_server_log
from ratelab.client.transports import check_client_installed
from ratelab.client.watch.sampler import DEFAULT_INTERVAL_S, check_interval
from ratelab.errors import ConfigError, RatelabError
from ratelab.experiment.arrivals import Constant, Poisson
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.polite import check_polite
from ratelab.records.schema import TIME_COLUMNS

__all__ = ["ERROR_PROCESS_LOST", "PROCESS_COLUMN", "run_processes", "split_evenly"]

#: The column of the merged frame (and server log) naming the process, 0..N-1.
PROCESS_COLUMN = "process"
STARTUP_TIMEOUT_S = 120.0  # every child must be ready (imported, engine built) by then
INTERRUPT_TIMEOUT_S = 30.0  # after an interrupt, children get this long to hand in results
JOIN_TIMEOUT_S = 5.0  # a child that sent its result must exit within this, or is terminated
TICK_S = 0.1


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` sizes differing by at most one, larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


# ------------------------------------------------------------------ the child process


class _ChildSignals:
    """SIGINT in a child: cancel the run once, however many arrive.

    Before the loop runs, a plain handler only notes the interrupt; while it runs, the
    loop's own handler (``add_signal_handler``: called on the loop, never mid-bytecode)
    cancels the running task, once. The engine catches the cancellation and returns the
    partial records."""

    def __init__(self) -> None:
        self.interrupted = False
        self.cancelled = False
        self.task: asyncio.Task[Any] | None = None
        signal.signal(signal.SIGINT, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.interrupted = True

    def _on_loop_sigint(self) -> None:
        self.interrupted = True
        self._cancel()

    def _cancel(self) -> None:
        if not self.cancelled and self.task is not None:
            self.cancelled = True
            self.task.cancel()

    def arm(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.task = task
        with contextlib.suppress(NotImplementedError):  # Windows loops have no signal handlers
            loop.add_signal_handler(signal.SIGINT, self._on_loop_sigint)
        if self.interrupted:  # it came before the loop: cancel at the engine's first await
            self._cancel()

    def disarm(self) -> None:
        # the loop's removal restores Python's default handler: put ours back
        signal.signal(signal.SIGINT, self._note)


async def _run_engine(engine: Any, signals: _ChildSignals) -> tuple[Any, dict[str, Any]]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signals.arm(loop, task)
    try:
        return await engine.run()  # awaited directly: the cancel lands inside its try
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)
        signals.disarm()
        for guard in getattr(engine, "guards", ()):  # e.g. SharedRateLimit's connections
            aclose = getattr(guard, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


def _parent_alive() -> bool:
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


def _child_main(
    k: int,
    data: dict[str, Any],
    modules: list[str],
    counts: Any,
    messages: Any,
    go: Any,
    out_dir: str,
    state_interval_s: float | None = DEFAULT_INTERVAL_S,
) -> None:
    """The entry point of child ``k`` (importable, as "spawn" needs). Messages to the
    parent: ``("ready", k, pid)``, then ``("done", k, path)`` or ``("error", k, traceback)``.
    Its engine samples its guards' and pool's state every ``state_interval_s`` (None: off)
    into its Result's ``state``, on its own clock (``_merge`` shifts it)."""
    signals = _ChildSignals()
    code = 0
    try:
        for name in modules:  # where the strategies' classes live (they register on import)
            importlib.import_module(name)
        from ratelab.client.engine import Engine

        exp = Experiment.from_dict(data)

        def tick(done: int) -> None:
            counts[k] = done

        for part in exp.strategy.parts:  # one-off costs now, not in the run's first second
            warm_up = getattr(part, "warm_up", None)
            if callable(warm_up):
                warm_up()
        engine = Engine(exp, base_url=exp.target_url, on_tick=tick, tick_s=TICK_S,
                        state_interval_s=state_interval_s)  # fmt: skip
        messages.put(("ready", k, os.getpid()))
        while not go.wait(TICK_S):
            if signals.interrupted:
                break  # run anyway: cancelled at once, every row a CancelledError
            if not _parent_alive():
                raise RatelabError("the parent process is gone")
        with asyncio.Runner(loop_factory=loop_factory(exp.loop)) as runner:
            store, meta = runner.run(_run_engine(engine, signals))
        meta["pid"] = os.getpid()
        result = Result(
            df=store.to_frame(), experiment=exp, meta=meta, headers=store.headers_frame(),
            state=engine.state_frame(),  # an interrupted run's samples too
        )  # fmt: skip
        path = result.save(Path(out_dir) / f"process-{k}.parquet")
        messages.put(("done", k, str(path)))
    except BaseException:
        code = 1
        messages.put(("error", k, traceback.format_exc()))
    # Hand the message over, then leave without the interpreter's teardown (garbage
    # collecting pandas, matplotlib, ...: a few hundred ms per child that the parent
    # would wait for). Everything that matters is on disk or in the pipe by now.
    messages.close()
    messages.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ------------------------------------------------------------------ the parent


def _modules(exp: Experiment) -> list[str]:
    """Modules the children import so every strategy class of ``exp`` is registered."""
    out: list[str] = []
    for part in exp.strategy.parts:
        name = type(part).__module__
        if name in ("__main__", "__mp_main__"):
            main = sys.modules.get("__main__")
            if getattr(main, "__file__", None) is None:  # a notebook or an interactive shell
                raise ConfigError(
                    "strategy", part,
                    f"{type(part).__name__} is defined in the notebook/interactive session, "
                    "which child processes cannot import: move the class into a module",
                )  # fmt: skip
            continue  # a script: spawn re-runs it as __mp_main__, which defines the class
        if name not in out:
            out.append(name)
    return out


def _check_main_module(n: int) -> None:
    """Spawned children re-import the main module from its file: a script read from
    standard input (``python - < run.py``, ``__file__ == "<stdin>"``) has none, and every
    child would die at start. Say so before starting any."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is not None and not os.path.exists(path):
        raise ConfigError(
            "processes", n,
            f"needs a main module that child processes can import, but it is {path!r} "
            "(a script on standard input?): the 'spawn' start method re-imports the main "
            "script from its file in every child. Save the script to a file and run that, "
            "or use processes=1",
        )  # fmt: skip


def _slices(exp: Experiment, n: int, url: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The children's experiments (plain data) and their request offsets."""
    requests = split_evenly(exp.requests, n)
    workers = split_evenly(exp.workers, n)
    offsets = [int(x) for x in np.cumsum([0, *requests[:-1]])]
    out = []
    for k in range(n):
        changes: dict[str, Any] = {
            "target": url,
            "requests": requests[k],
            "workers": workers[k],
            "seed": None if exp.seed is None else exp.seed + k,
            "processes": 1,
        }
        arrivals = exp.arrivals
        if isinstance(arrivals, Constant | Poisson) and requests[k] > 0:
            share = requests[k] / exp.requests
            changes["arrivals"] = type(arrivals)(arrivals.rate_per_s * share)
        out.append(exp.replace(**changes).to_dict(redact=False))  # secrets to the children
    return out, offsets


@dataclass
class _Fleet:
    """The children of one run and what they have reported."""

    procs: list[Any]
    messages: Any
    go: Any
    counts: Any
    ready: set[int] = field(default_factory=set)
    done: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)  # raised: its traceback
    lost: dict[int, str] = field(default_factory=dict)  # died without a word (SIGKILL, OOM)
    exited_at: dict[int, float] = field(default_factory=dict)
    signalled: bool = False

    @property
    def open(self) -> list[int]:
        return [
            k for k in range(len(self.procs))
            if k not in self.done and k not in self.errors and k not in self.lost
        ]  # fmt: skip

    def poll(self, timeout: float) -> None:
        """Take the messages that arrive within ``timeout``; note children that died."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, k, payload = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if kind == "ready":
                self.ready.add(k)
            elif kind == "done":
                self.done[k] = payload
            else:
                self.errors[k] = payload
            if time.monotonic() >= deadline:
                break
        now = time.monotonic()
        for k in self.open:  # exited without a word (killed): give its pipe a moment first
            if self.procs[k].exitcode is not None:
                first = self.exited_at.setdefault(k, now)
                if now - first > 1.0:
                    code = self.procs[k].exitcode
                    how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                    self.lost[k] = f"{how} without sending a result"

    def interrupt(self) -> None:
        """SIGINT to every child still running (once), and let waiting ones go."""
        if not self.signalled:
            self.signalled = True
            for k in self.open:
                p = self.procs[k]
                if p.pid is not None and p.exitcode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGINT)
        self.go.set()

    def wait_all(self, deadline: float, on_tick: Callable[[], None] | None = None) -> None:
        while self.open and time.monotonic() < deadline:
            self.poll(TICK_S)
            if on_tick is not None:
                on_tick()

    def reap(self) -> None:
        """Join every child; terminate, then kill, any that lingers. No zombies."""
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.exitcode is None:
                p.terminate()
                p.join(2.0)
            if p.exitcode is None:
                p.kill()
                p.join()
        for p in self.procs:
            with contextlib.suppress(ValueError):
                p.close()
        self.messages.close()


def run_processes(
    experiment: Experiment, *, processes: int, progress: bool = True,
    state_interval_s: float | None = DEFAULT_INTERVAL_S,
) -> Result:  # fmt: skip
    """Run ``experiment`` split across ``processes`` OS processes; return one merged Result.

    See the module docstring for how requests, workers, seeds and arrivals are split, and
    how the records, the server log and the sampled state are merged onto one clock.
    ``state_interval_s`` (default 0.05; None: off) is how often every child samples its
    guards' and its pool's state into ``result.state`` (one ``process`` column, one clock).
    Raises :class:`~ratelab.errors.ConfigError`, before any process starts, for
    ``processes`` that is not an int >= 1 or exceeds ``workers`` and for a
    ``state_interval_s`` that is not None or a number > 0;
    :class:`~ratelab.errors.RatelabError` (with the child's traceback) when a child fails.
    An interrupt returns the partial Result with ``meta["interrupted"] = True``.
    """
    if not isinstance(experiment, Experiment):
        raise ConfigError("experiment", experiment, "must be an rl.Experiment(...)")
    exp = experiment
    n = integer("processes", processes, minimum=1)
    interval = check_interval(state_interval_s)
    if n > exp.workers:
        raise ConfigError(
            "processes", processes,
            f"must be <= workers={exp.workers}: every process needs at least one worker",
        )  # fmt: skip
    check_polite(exp, processes=n)  # every process together, before any is started
    _check_main_module(n)
    loop_factory(exp.loop)  # uvloop asked for but not installed: say so before forking
    check_client_installed(exp.client)  # likewise httpx
    modules = _modules(exp)
    for part in exp.strategy.parts:  # e.g. SharedRateLimit: is Redis there? (fail early)
        preflight = getattr(part, "preflight", None)
        if callable(preflight):
            preflight()
    data, offsets = _slices(exp, n, exp.target)
    with tempfile.TemporaryDirectory(prefix="ratelab-processes-") as out_dir:
        results, interrupted, lost = _run_fleet(
            exp, n, data, modules, out_dir, progress, state_interval_s=interval
        )
    return _merge(exp, results, offsets, interrupted=interrupted, lost=lost, data=data)


def _run_fleet(
    exp: Experiment,
    n: int,
    data: list[dict[str, Any]],
    modules: list[str],
    out_dir: str,
    progress: bool,
    *,
    state_interval_s: float | None = DEFAULT_INTERVAL_S,
) -> tuple[dict[int, Result], bool, dict[int, str]]:
    ctx = multiprocessing.get_context("spawn")
    fleet = _Fleet(
        procs=[], messages=ctx.Queue(), go=ctx.Event(), counts=ctx.Array("q", n, lock=False)
    )
    bar = Progress(exp, progress, desc=f"{exp.label} ×{n}")

    def tick() -> None:
        bar.update_to(sum(fleet.counts[:]))

    interrupted = False
    try:
        try:
            for k in range(n):
                args = (k, data[k], modules, fleet.counts, fleet.messages, fleet.go, out_dir,
                        state_interval_s)  # fmt: skip
                p = ctx.Process(
                    target=_child_main,
                    args=args,
                    name=f"ratelab-process-{k}",
                    daemon=True,
                )
                fleet.procs.append(p)
                p.start()
            started = time.monotonic()
            while (
                len(fleet.ready | fleet.errors.keys() | fleet.lost.keys()) < n and not fleet.errors
            ):
                if time.monotonic() - started > STARTUP_TIMEOUT_S:
                    raise RatelabError(
                        f"only {len(fleet.ready)} of {n} processes were ready after "
                        f"{STARTUP_TIMEOUT_S:g} s"
                    )
                fleet.poll(TICK_S)
            if not fleet.errors:
                fleet.go.set()  # every child built its engine (or died): start together
            while fleet.open and not fleet.errors:
                fleet.poll(TICK_S)
                tick()
        except KeyboardInterrupt:
            interrupted = True
            fleet.interrupt()
            fleet.wait_all(time.monotonic() + INTERRUPT_TIMEOUT_S, tick)
        if fleet.errors and not interrupted:  # stop the others, report the first failure
            fleet.interrupt()
            fleet.wait_all(time.monotonic() + INTERRUPT_TIMEOUT_S)
            k = min(fleet.errors)
            raise RatelabError(f"process {k} of {n} failed:\n{fleet.errors[k]}")
        tick()
    finally:
        bar.close()
        fleet.reap()
    results = {k: load(path) for k, path in sorted(fleet.done.items())}
    if not results:
        if interrupted:  # stopped before any process had anything to show
            raise KeyboardInterrupt
        why = "; ".join(f"process {k} {how}" for k, how in sorted(fleet.lost.items()))
        raise RatelabError(f"none of the {n} processes returned a result: {why}")
    lost = dict(fleet.lost)
    for k in range(n):  # interrupted while still starting: nothing handed in
        if k not in results and k not in lost:
            lost[k] = "interrupted before it handed in a result"
    return results, interrupted, lost


# ------------------------------------------------------------------ merging


def _union_categoricals(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Give every categorical column the same categories in every frame (first-seen order),
    so ``pd.concat`` keeps it categorical."""
    if not frames:
        return frames
    for col in frames[0].columns:
        if not isinstance(frames[0][col].dtype, pd.CategoricalDtype):
            continue
        cats: dict[Any, None] = {}
        for f in frames:
            cats.update(dict.fromkeys(f[col].cat.categories))
        index = pd.Index(list(cats), dtype=frames[0][col].cat.categories.dtype)
        for f in frames:
            f[col] = f[col].cat.set_categories(index)
    return frames


def _merge(
    exp: Experiment,
    results: dict[int, Result],
    offsets: list[int],
    *,
    interrupted: bool,
    lost: dict[int, str] | None = None,
    data: list[dict[str, Any]] | None = None,
    server_log: pd.DataFrame | None = None,
) -> Result:
    """One Result of the processes' ``results`` (see the module doc). ``server_log``: the
    server's rows of every process's run, times from the earliest ``t0`` (default: asked
    of the target, if it is this machine); ``rl.simulate(clients=N)`` passes its own."""
    lost = lost or {}
    t0 = {k: float(r.meta["t0_monotonic"]) for k, r in results.items()}
    t_min = min(t0.values())
    frames = []
    for k, r in results.items():
        df = r.df.copy()
        shift = t0[k] - t_min
        for c in TIME_COLUMNS:
            df[c] = df[c] + shift
        df["request_id"] = df["request_id"] + offsets[k]
        df[PROCESS_COLUMN] = np.full(len(df), k, np.int16)
        frames.append(df)
    for k in sorted(lost):  # what it was to send: one row per request, marked
        if data is not None:
            df = _lost_rows(Experiment.from_dict(data[k]))
            df["request_id"] = df["request_id"] + offsets[k]
            df[PROCESS_COLUMN] = np.full(len(df), k, np.int16)
            frames.append(df)
    df = pd.concat(_union_categoricals(frames), ignore_index=True)
    df = df.sort_values(["request_id", "attempt"], kind="stable", ignore_index=True)

    process_meta = []
    for k, r in results.items():
        m = r.meta
        entry = {
            "process": k,
            "pid": m.get("pid"),
            "run": m["run"],
            "requests": r.experiment.requests,
            "workers": r.experiment.workers,
            "seed": r.experiment.seed,
            "request_offset": offsets[k],
            "t0_monotonic": t0[k],
            "t0_shift_s": t0[k] - t_min,
            "started_at": m.get("started_at"),
            "wall_s": m.get("wall_s"),
            "interrupted": bool(m.get("interrupted", False)),
            "loop": m.get("loop"),
        }
        if "adaptive_rate" in m:
            entry["adaptive_rate"] = [(t + t0[k] - t_min, rate) for t, rate in m["adaptive_rate"]]
        process_meta.append(entry)
    first = results[min(results)].meta
    skip = {"run", "t0_monotonic", "started_at", "wall_s", "interrupted", "seed", "pid",
            "adaptive_rate"}  # fmt: skip
    meta: dict[str, Any] = {k: v for k, v in first.items() if k not in skip}
    meta.update(
        started_at=min(str(p["started_at"]) for p in process_meta),
        seed=exp.seed,
        wall_s=max(p["t0_shift_s"] + float(p["wall_s"] or 0.0) for p in process_meta),
        interrupted=interrupted or any(p["interrupted"] for p in process_meta),
        t0_monotonic=t_min,
        processes=len(offsets),
        runs=[p["run"] for p in process_meta],
        process_meta=process_meta,
    )
    if lost:
        meta["lost_processes"] = sorted(lost)
        meta["lost_reasons"] = {str(k): why for k, why in sorted(lost.items())}

    runs = {p["run"]: p["process"] for p in process_meta}
    log = server_log
    if log is None:
        log = fetch_server_log(exp.target, runs=list(runs), t0=t_min)
    server_log = None
    if log is not None:
        log = log[log["run"].isin(list(runs))].reset_index(drop=True).copy()
        proc = log["run"].astype(str).map(runs).to_numpy(dtype=np.int16)
        log["run"] = log["run"].cat.remove_unused_categories()
        log["request_id"] = log["request_id"] + np.asarray(offsets, np.int64)[proc]
        log[PROCESS_COLUMN] = proc
        server_log = log
    headers = [r.headers.assign(request_id=r.headers["request_id"] + offsets[k])
               for k, r in results.items()]  # fmt: skip
    headers_df = pd.concat(_union_categoricals(headers), ignore_index=True)
    headers_df = headers_df.sort_values(["request_id", "attempt"], kind="stable", ignore_index=True)
    state = _merge_state(results, {k: t0[k] - t_min for k in results})
    return Result(
        df=df, experiment=exp, meta=meta, server_log=server_log, headers=headers_df, state=state
    )


def _merge_state(results: dict[int, Result], shifts: dict[int, float]) -> pd.DataFrame:
    """The children's sampled state on the merged clock: each child's ``t_s`` shifted by
    ``shifts[k]`` (the very shift of its records' times), a ``process`` column (int16)
    last, rows in time order (a tie keeps process order, then each child's own order).
    Present, with that column, whenever the run was split, even with no rows (sampling
    off, or nothing to sample); a lost process has no rows (its samples died with it)."""
    frames = []
    for k, r in results.items():
        state = r.state
        if state is None or not len(state):
            continue
        state = state.copy()
        state["t_s"] = state["t_s"] + shifts[k]  # as the records' TIME_COLUMNS are shifted
        state[PROCESS_COLUMN] = np.full(len(state), k, np.int16)
        frames.append(state)
    if not frames:
        out = empty_state()
        out[PROCESS_COLUMN] = np.zeros(0, np.int16)
        return out
    out = pd.concat(_union_categoricals(frames), ignore_index=True)
    return out.sort_values("t_s", kind="stable", ignore_index=True)


#: The ``error`` of every request of a process that died without handing in its records.
ERROR_PROCESS_LOST = "ProcessLost"


def _lost_rows(child: Experiment) -> pd.DataFrame:
    """One row per request of a lost process: attempt 1, no times, ``error`` =
    :data:`ERROR_PROCESS_LOST`. The endpoint is drawn as the child's engine drew it (the
    same seed; arbitrary when ``seed`` is None): what it did send died with it."""
    from ratelab.records.store import RecordStore

    n = child.requests
    endpoints = list(child.endpoints)
    weights = np.array([child.endpoints[p] for p in endpoints])  # type: ignore[index]
    codes = np.random.default_rng(child.seed).choice(
        len(endpoints), size=n, p=weights / weights.sum()
    )
    store = RecordStore(n, endpoints=endpoints, methods=[child.method])
    store.add_requests(np.arange(n), codes, np.zeros(n, np.int32))
    store.error[:n] = store.error_code(ERROR_PROCESS_LOST)
    return store.to_frame()
