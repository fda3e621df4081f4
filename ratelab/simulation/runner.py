"""``rl.simulate`` and ``await rl.asimulate``: an Experiment on a virtual clock, against a
simulated server, in a fraction of the time it would take.

    server = rl.LocalServer(latency=rl.Uniform(0.05, 0.2), rate_limit=rl.ServerRateLimit(20))
    exp = rl.Experiment(target="http://127.0.0.1:8080", requests=6000, workers=20,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(10), seed=1)
    result = rl.simulate(exp, server)       # minutes of traffic in about a second
    result.meta["clock"]                    # "virtual"

The run is the real one: the same :class:`~ratelab.client.engine.Engine`, the same guards
(aiolimiter's ``AsyncLimiter``, ``asyncio.Semaphore``, the token bucket, the sliding window,
``Adaptive``, ``Retry``), on a :class:`~ratelab.testing.VirtualClockLoop` whose clock jumps
to the next timer, with a :class:`~ratelab.simulation.server.SimulatedServer` as the
transport. The Result has a real run's columns and dtypes, a ``server_log`` with the
LocalServer log's columns, and ``meta["clock"] == "virtual"``. The same experiment, seed and
server give the same frame on any machine, however busy.

The run always goes to a worker thread with its own virtual-clock loop (the caller's loop,
if any, is not virtual), while the calling thread shows the progress bar; an interrupt
cancels it and returns the partial Result, as ``rl.run`` does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import numbers
from typing import TYPE_CHECKING, Any

from ratelab.analysis.result import Result
from ratelab.client.engine import Engine
from ratelab.client.progress import Progress
from ratelab.client.runner import _run_in_thread
from ratelab.errors import ConfigError, RunError
from ratelab.experiment.experiment import Experiment, is_loopback
from ratelab.simulation.server import DEFAULT_RTT_S, SimulatedServer
from ratelab.testing.virtual_clock import VirtualClockLoop

if TYPE_CHECKING:
    from ratelab.server.local import LocalServer

__all__ = ["asimulate", "check_simulation", "simulate"]

_NOT_SIMULATED = ("SharedRateLimit",)
#: The simulation has no sockets: poll for I/O (the loop's wake-up pipe) every so often only.
_POLL_EVERY = 64


def _loop() -> VirtualClockLoop:
    return VirtualClockLoop(poll_every=_POLL_EVERY)  # guards on an outside service's clock (Redis)


def check_simulation(experiment: object, server: object, rtt_s: object) -> LocalServer | None:
    """Refuse, with a ConfigError saying why, what cannot be simulated; return the server."""
    from ratelab.server.local import LocalServer

    if not isinstance(experiment, Experiment):
        raise ConfigError("experiment", experiment, "must be an rl.Experiment(...)")
    exp = experiment
    if server is not None and not isinstance(server, LocalServer):
        raise ConfigError(
            "server", server,
            "must be a rl.LocalServer(...) describing the server to simulate (it is never "
            "started or contacted), or None",
        )  # fmt: skip
    if server is None and not is_loopback(exp.target):
        raise ConfigError(
            "server", None,
            f"no server model for {exp.target}: pass server=rl.LocalServer(...) to describe "
            "it (latency, rate_limit, max_concurrency, faults)",
        )  # fmt: skip
    if (
        isinstance(rtt_s, bool)
        or not isinstance(rtt_s, numbers.Real)
        or not 0 <= float(rtt_s) < float("inf")
    ):
        raise ConfigError("rtt_s", rtt_s, "must be a finite number of seconds >= 0")
    if exp.processes != 1:
        raise ConfigError(
            "processes", exp.processes,
            "a simulation runs in one process on one virtual clock: use processes=1 "
            "(the workers still run concurrently)",
        )  # fmt: skip
    if exp.loop != "asyncio":
        raise ConfigError(
            "loop", exp.loop,
            "a simulation runs on a virtual-clock asyncio loop: use loop='asyncio'",
        )  # fmt: skip
    for part in exp.strategy.parts:
        if type(part).__name__ in _NOT_SIMULATED:
            raise ConfigError(
                "strategy", part,
                f"{type(part).__name__} keeps its count in Redis, on Redis's real clock: "
                "it cannot be simulated on a virtual one",
            )  # fmt: skip
    return server


def _run_token(exp: Experiment, server: LocalServer | None, rtt_s: float) -> str:
    """A run token that depends only on what is simulated (so the frames repeat exactly)."""
    what = {"experiment": exp.to_dict(), "server": repr(server), "rtt_s": rtt_s}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=repr).encode()).hexdigest()[:8]


def _executor(server: LocalServer | None, rtt_s: float) -> Any:
    async def execute(exp: Experiment, _progress: Progress | None, box: list[Engine]) -> Result:
        transport = SimulatedServer(server, rtt_s=rtt_s, seed=exp.seed)
        # no on_tick: a ticker would wake every 0.1 s of *virtual* time (864,000 times a
        # day); the calling thread reads engine.completed instead
        engine = Engine(exp, base_url=exp.target, transport=transport)
        engine.run_token = _run_token(exp, server, rtt_s)
        box.append(engine)
        try:
            store, meta = await engine.run()
        except RunError as e:
            if e.records is not None:
                store, meta = e.records  # type: ignore[misc]
                e.result = _result(exp, store, meta, transport, rtt_s)
            raise
        return _result(exp, store, meta, transport, rtt_s)

    return execute


def _result(
    exp: Experiment, store: Any, meta: dict[str, Any], transport: SimulatedServer, rtt_s: float
) -> Result:
    meta["clock"] = "virtual"
    meta["loop"] = "asyncio"  # a VirtualClockLoop is asyncio's selector loop
    meta["virtual_s"] = float(transport.loop.time() - meta["t0_monotonic"])
    meta["rtt_s"] = rtt_s
    if transport.server is not None:
        meta["server"] = repr(transport.server)
    server_log = transport.log(meta["t0_monotonic"])
    return Result(df=store.to_frame(), experiment=exp, meta=meta, server_log=server_log)


def simulate(
    experiment: Experiment,
    server: LocalServer | None = None,
    *,
    progress: bool = True,
    rtt_s: float = DEFAULT_RTT_S,
) -> Result:
    """Run ``experiment`` on a virtual clock against a simulated ``server``; return its Result.

    ``server`` is a :class:`~ratelab.LocalServer` (started or not; it is never contacted):
    its latency model and seed, ``rate_limit``, ``max_concurrency``, ``overload_status`` and
    ``faults`` are what is simulated. None: a server with no latency and no policies, for a
    loopback target (a target elsewhere needs a server model). ``rtt_s`` is the fixed network
    round trip, part of every request's latency. Works in scripts and in Jupyter; an
    interrupt returns the partial Result. What cannot be simulated (``processes > 1``,
    uvloop, ``SharedRateLimit``) raises
    :class:`~ratelab.errors.ConfigError` before anything runs.
    """
    server = check_simulation(experiment, server, rtt_s)
    return _run_in_thread(experiment, progress, _loop, _executor(server, float(rtt_s)))


async def asimulate(
    experiment: Experiment,
    server: LocalServer | None = None,
    *,
    progress: bool = True,
    rtt_s: float = DEFAULT_RTT_S,
) -> Result:
    """``await rl.asimulate(exp, server)``: :func:`simulate` without blocking the caller's
    loop (the simulation runs on a virtual-clock loop in a worker thread)."""
    server = check_simulation(experiment, server, rtt_s)
    execute = _executor(server, float(rtt_s))
    return await asyncio.to_thread(_run_in_thread, experiment, progress, _loop, execute)
