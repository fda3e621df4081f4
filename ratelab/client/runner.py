"""Running an Experiment: ``rl.run`` (scripts and notebooks) and ``await rl.arun`` (async code).

``run`` with no running loop uses an ``asyncio.Runner``, whose Ctrl-C handling cancels the
run. Inside a running loop (a Jupyter kernel) it runs the experiment on a worker thread with
a fresh loop of its own and waits in short slices, so an interrupt (the kernel's Stop button,
KeyboardInterrupt) reaches it: the run is cancelled and the partial Result comes back. The
library never patches the caller's loop.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ratelab.analysis.result import Result
from ratelab.client.engine import MIN_TICK_S, Engine
from ratelab.client.loops import loop_factory, loop_name
from ratelab.client.progress import Progress
from ratelab.client.server_log import fetch_server_log
from ratelab.client.watch.live import close_view, live_view
from ratelab.client.watch.sampler import DEFAULT_INTERVAL_S, check_interval
from ratelab.errors import ConfigError, RunError
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.polite import check_polite

__all__ = ["arun", "run"]

#: Wall seconds between two progress updates from the thread that waits for a run.
TICK_S = 0.1


def _check(experiment: object) -> Experiment:
    if not isinstance(experiment, Experiment):
        raise ConfigError("experiment", experiment, "must be an rl.Experiment(...)")
    return experiment


async def _execute(
    exp: Experiment, progress: Progress | None, engine_box: list[Engine], *,
    state_interval_s: float | None = DEFAULT_INTERVAL_S,
) -> Result:  # fmt: skip
    engine = Engine(exp, base_url=exp.target, on_tick=progress.update_to if progress else None,
                    state_interval_s=state_interval_s)  # fmt: skip
    engine_box.append(engine)
    try:
        store, meta = await engine.run()
    except RunError as e:
        if e.records is not None:  # the rows so far, as a Result on the error
            store, meta = e.records  # type: ignore[misc]
            e.result = await _result(exp, store, meta, engine.state_frame())
        raise
    return await _result(exp, store, meta, engine.state_frame())


async def _result(exp: Experiment, store: Any, meta: dict[str, Any], state: Any = None) -> Result:
    server_log = await asyncio.to_thread(
        fetch_server_log, exp.target, runs=[meta["run"]], t0=meta["t0_monotonic"]
    )
    if server_log is not None:
        server_log["run"] = server_log["run"].cat.remove_unused_categories()
    meta["clock"] = "real"
    return Result(
        df=store.to_frame(), experiment=exp, meta=meta, server_log=server_log,
        headers=store.headers_frame(), state=state,
    )  # fmt: skip


async def arun(
    experiment: Experiment, *, progress: bool = True, live: bool = False,
    state_interval_s: float | None = DEFAULT_INTERVAL_S,
) -> Result:  # fmt: skip
    """Run ``experiment`` on the current loop and return its Result (``await rl.arun(exp)``).

    Cancelling the awaiting task stops the run and returns the partial Result. ``live`` and
    ``state_interval_s``: as :func:`run`.
    """
    exp = _check(experiment)
    check_polite(exp, processes=1)  # before anything is sent (plain data skipped it)
    if exp.processes != 1:
        raise ConfigError(
            "processes",
            exp.processes,
            "arun runs in this loop only: use rl.run(exp) for processes > 1",
        )
    running = loop_name(asyncio.get_running_loop())
    if exp.loop == "uvloop" and running != "uvloop":
        raise ConfigError(
            "loop", exp.loop, f"arun runs in the caller's loop ({running}): use rl.run(exp)"
        )
    interval = check_interval(state_interval_s)
    engines: list[Engine] = []
    bar = live_view(exp, live=live, progress=progress, engines=engines)
    result = None
    try:
        result = await _execute(exp, bar, engines, state_interval_s=interval)
        return result
    except RunError as e:
        result = e.result
        raise
    finally:
        close_view(bar, result)


def run(
    experiment: Experiment,
    *,
    progress: bool = True,
    processes: int | None = None,
    loop: str | None = None,
    live: bool = False,
    state_interval_s: float | None = DEFAULT_INTERVAL_S,
) -> Result:
    """Run ``experiment`` to the end and return its Result; works in scripts and in Jupyter.

    ``progress=False`` hides the progress bar (so does ``TQDM_DISABLE=1``). An interrupt
    (Ctrl-C, the kernel's Stop button) cancels the run and returns the partial Result, with
    ``result.interrupted`` set and unfinished requests marked ``CancelledError``.

    ``processes=N`` (or ``Experiment(processes=N)``) splits the requests and workers across
    N OS processes, each with its own loop, and merges their frames (a ``process`` column,
    one clock), ``result.state`` included (every process samples its own guards and pool
    every ``state_interval_s``): see :func:`ratelab.client.processes.run_processes`.

    ``loop="uvloop"`` (or ``Experiment(loop="uvloop")``; needs ``pip install
    'ratelab[uvloop]'``) runs on uvloop instead of asyncio's loop: less client CPU per
    request; records keep full resolution and rate limits do not busy-wait on its
    millisecond timers (see :mod:`ratelab.client.loops`). ``result.meta["loop"]`` says which ran.

    ``live=True`` watches the run as it goes instead of a progress bar: in JupyterLab a
    figure updated every 0.4 s (throughput, in flight, waits, 429s, the limiters'
    state), replaced by the final static figure when the run ends; in a terminal one line
    of headline numbers rewritten in place; where output is not a terminal, the progress
    bar (see :mod:`ratelab.client.watch.live`). ``state_interval_s`` (default 0.05; None:
    off) is how often the guards' and the pool's state is sampled into ``result.state``.
    """
    exp = _check(experiment)
    if loop is not None and loop != exp.loop:
        exp = exp.replace(loop=loop)
    n = exp.processes if processes is None else processes
    interval = check_interval(state_interval_s)  # before any process starts
    if n == 1:
        check_polite(exp, processes=1)  # before anything is sent; processes: run_processes
    else:
        from ratelab.client.processes import run_processes

        if live:
            raise ConfigError("live", live, "a live view follows one process: processes=1")
        return run_processes(
            exp.replace(processes=n), processes=n, progress=progress, state_interval_s=interval
        )
    factory = loop_factory(exp.loop)
    execute = functools.partial(_execute, state_interval_s=interval)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=factory) as runner:
            engines: list[Engine] = []
            bar = live_view(exp, live=live, progress=progress, engines=engines)
            result = None
            try:
                result = runner.run(execute(exp, bar, engines))
                return result
            except RunError as e:
                result = e.result
                raise
            finally:
                close_view(bar, result)
    return _run_in_thread(exp, progress, factory, execute, live=live)


def _run_in_thread(
    exp: Experiment,
    progress: bool,
    factory: Callable[[], asyncio.AbstractEventLoop],
    execute: Callable[[Experiment, Progress | None, list[Engine]], Awaitable[Result]] | None = None,
    *,
    live: bool = False,
) -> Result:
    """Run on a worker thread with its own loop; the calling thread feeds the progress bar
    and turns a KeyboardInterrupt into a cancellation of the run. ``execute`` (default: a
    real run) makes the Result and puts its Engine in the list it is given."""
    execute = _execute if execute is None else execute
    box: dict[str, Any] = {}
    engines: list[Engine] = []
    bar = live_view(exp, live=live, progress=progress, engines=engines)  # fed from here
    started = threading.Event()
    finished = threading.Event()  # waited on instead of thread.join(): on 3.11 an interrupt
    # inside join() can mark a live thread as stopped (the bpo-45274 workaround)

    def target() -> None:
        loop = factory()
        try:
            task = loop.create_task(execute(exp, None, engines))  # type: ignore[arg-type]
            box["loop"], box["task"] = loop, task
            started.set()
            box["result"] = loop.run_until_complete(task)
        except BaseException as e:  # handed to the calling thread
            box["error"] = e
        finally:
            started.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                finished.set()

    thread = threading.Thread(target=target, name="ratelab-run", daemon=True)
    thread.start()
    restore = _raise_on_sigint()
    try:
        try:
            wait_s = TICK_S
            while not finished.wait(wait_s):
                due_s = bar.update_to(engines[0].completed) if engines else None
                # a live view says when its next frame is due (sooner than a tick)
                wait_s = TICK_S if due_s is None else min(TICK_S, max(due_s, MIN_TICK_S))
        except KeyboardInterrupt:
            started.wait()
            loop, task = box.get("loop"), box.get("task")
            if loop is not None and task is not None and not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)
            finished.wait()
        thread.join(1.0)  # it has finished its work; let it exit (leave no thread behind)
        if engines:
            bar.update_to(engines[0].completed)
    finally:
        restore()
        error = box.get("error")
        close_view(bar, box.get("result", getattr(error, "result", None)))
    if "error" in box:
        raise box["error"]
    return box["result"]


def _raise_on_sigint() -> Callable[[], None]:
    """While the calling thread waits for the run: make SIGINT raise KeyboardInterrupt
    here, so Ctrl-C cancels the run and the partial Result comes back. Inside
    ``asyncio.run(...)`` the Runner's own handler would only cancel its main task, which
    cannot run while this call blocks its loop: the run went on to its end, and then the
    Result was lost to the cancellation. Returns the function that puts the previous
    handler back (a no-op off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    try:
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except (ValueError, OSError):  # pragma: no cover - e.g. an embedded interpreter
        return lambda: None

    def restore() -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    return restore
