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

from ratelab._validate import integer
from ratelab.analysis.result import Result
from ratelab.client.engine import Engine
from ratelab.client.progress import Progress
from ratelab.client.runner import _run_in_thread
from ratelab.client.watch.live import check_speed, pace
from ratelab.client.watch.sampler import DEFAULT_INTERVAL_S, check_interval
from ratelab.errors import ConfigError, RunError
from ratelab.experiment.experiment import Experiment, is_loopback
from ratelab.simulation.server import (
    DEFAULT_CONNECT_S,
    DEFAULT_CPU_S,
    DEFAULT_LATE_S,
    DEFAULT_RTT_S,
    SimulatedServer,
)
from ratelab.simulation.shared import check_shared, simulated_strategy
from ratelab.testing.virtual_clock import VirtualClockLoop

if TYPE_CHECKING:
    from ratelab.server.local import LocalServer

__all__ = ["asimulate", "check_simulation", "simulate"]

#: The simulation has no sockets: poll for I/O (the loop's wake-up pipe) every so often only.
_POLL_EVERY = 64
#: The wall clock of every simulation starts here (2026-01-01T00:00:00Z, virtual time 0), so
#: absolute resets in the headers (GitHub's epoch seconds, Anthropic's dates) are the same
#: in two simulations of the same thing, and so are their frames.
SIMULATION_EPOCH_S = 1_767_225_600.0


def _loop() -> VirtualClockLoop:
    # poll_every: guards on an outside service's clock (Redis)
    return VirtualClockLoop(poll_every=_POLL_EVERY, epoch_offset_s=SIMULATION_EPOCH_S)


def check_simulation(
    experiment: object, server: object, rtt_s: object, *, clients: object = 1
) -> LocalServer | None:
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
    _seconds("rtt_s", rtt_s)
    if exp.processes != 1:
        raise ConfigError(
            "processes", exp.processes,
            "a simulation runs in one process on one virtual clock: use processes=1, and "
            f"clients={exp.processes} for that many independent clients (as processes="
            f"{exp.processes} splits the work) against one simulated server",
        )  # fmt: skip
    n = integer("clients", clients, minimum=1)
    if n > max(exp.workers, 1):
        raise ConfigError("clients", clients, f"must be at most workers ({exp.workers})")
    if exp.loop != "asyncio":
        raise ConfigError(
            "loop", exp.loop,
            "a simulation runs on a virtual-clock asyncio loop: use loop='asyncio'",
        )  # fmt: skip
    check_shared(exp.strategy)
    return server


def _seconds(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0 <= float(value) < float("inf")
    ):
        raise ConfigError(name, value, "must be a finite number of seconds >= 0")
    return float(value)


class Host:
    """The simulated host's timings, checked: ``rtt_s`` (network round trip), ``cpu_s`` (CPU
    per request, one at a time), ``late_s`` (how late a latency sleep wakes), ``connect_s``
    (CPU to open a connection)."""

    __slots__ = ("connect_s", "cpu_s", "late_s", "rtt_s")

    def __init__(
        self, rtt_s: object, cpu_s: object = 0.0, late_s: object = 0.0, connect_s: object = 0.0
    ) -> None:
        self.rtt_s = _seconds("rtt_s", rtt_s)
        self.cpu_s = _seconds("cpu_s", cpu_s)
        self.late_s = _seconds("late_s", late_s)
        self.connect_s = _seconds("connect_s", connect_s)

    def as_dict(self) -> dict[str, float]:
        return {"rtt_s": self.rtt_s, "cpu_s": self.cpu_s, "late_s": self.late_s,
                "connect_s": self.connect_s}  # fmt: skip


def _run_token(
    exp: Experiment, server: LocalServer | None, host: Host, client: int | None = None
) -> str:
    """A run token that depends only on what is simulated (so the frames repeat exactly)."""
    what: dict[str, Any] = {"experiment": exp.to_dict(), "server": repr(server), **host.as_dict()}
    if client is not None:
        what["client"] = client
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=repr).encode()).hexdigest()[:8]


def _executor(
    server: LocalServer | None, host: Host, *, state_interval_s: float | None = DEFAULT_INTERVAL_S,
    speed: float | None = None,
) -> Any:  # fmt: skip
    async def execute(exp: Experiment, _progress: Progress | None, box: list[Engine]) -> Result:
        transport = SimulatedServer(server, seed=exp.seed, **host.as_dict())
        # no on_tick: a ticker would wake every 0.1 s of *virtual* time (864,000 times a
        # day); the calling thread reads engine.completed instead
        sim_exp = exp.replace(strategy=simulated_strategy(exp.strategy))
        engine = Engine(sim_exp, base_url=exp.target, transport=transport,
                        state_interval_s=state_interval_s)  # fmt: skip
        engine.run_token = _run_token(exp, server, host)
        box.append(engine)
        pacer = None if speed is None else asyncio.get_running_loop().create_task(pace(speed))
        try:
            store, meta = await engine.run()
        except RunError as e:
            if e.records is not None:
                store, meta = e.records  # type: ignore[misc]
                e.result = _result(exp, store, meta, transport, host, engine.state_frame())
            raise
        finally:
            if pacer is not None:
                pacer.cancel()
        return _result(exp, store, meta, transport, host, engine.state_frame())

    return execute


class _Clients:
    """What the progress bar reads: the requests completed by every client."""

    def __init__(self, engines: list[Engine]) -> None:
        self.engines = engines

    @property
    def completed(self) -> int:
        return sum(e.completed for e in self.engines)


def _clients_executor(server: LocalServer | None, host: Host, n: int) -> Any:
    """N independent clients (each its own guards, pool and engine, with its share of the
    requests and workers as ``processes=N`` splits them) against one simulated server, on
    one virtual loop; merged as ``processes=N`` merges (a ``process`` column)."""
    from ratelab.client.processes import _merge, _slices

    async def execute(exp: Experiment, _progress: Progress | None, box: list[Any]) -> Result:
        data, offsets = _slices(exp, n, exp.target)
        primary = SimulatedServer(server, seed=exp.seed, **host.as_dict())
        engines: list[Engine] = []
        parts: list[Experiment] = []
        for k in range(n):
            part = Experiment.from_dict(data[k])
            transport = primary if k == 0 else primary.client()
            sim_exp = part.replace(strategy=simulated_strategy(part.strategy, client=k))
            engine = Engine(sim_exp, base_url=exp.target, transport=transport)
            engine.run_token = _run_token(exp, server, host, client=k)
            engines.append(engine)
            parts.append(part)
        box.append(_Clients(engines))
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(e.run()) for e in engines]
        interrupted = False
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:  # each engine keeps what it recorded
            interrupted = True
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks)
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        results: dict[int, Result] = {}
        failure: RunError | None = None
        for k, t in enumerate(tasks):
            try:
                store, meta = t.result()
            except RunError as e:
                failure = failure or e
                if e.records is None:
                    continue
                store, meta = e.records  # type: ignore[misc]
            meta["clock"] = "virtual"
            meta["loop"] = "asyncio"
            results[k] = Result(df=store.to_frame(), experiment=parts[k], meta=meta,
                                headers=store.headers_frame())  # fmt: skip
        t0 = min(float(r.meta["t0_monotonic"]) for r in results.values())
        merged = _merge(exp, results, offsets, interrupted=interrupted, server_log=primary.log(t0))
        merged.meta["virtual_s"] = float(primary.loop.time() - t0)
        merged.meta["clients"] = n
        merged.meta.update(host.as_dict())
        if server is not None:
            merged.meta["server"] = repr(server)
        if failure is not None:
            failure.result = merged
            raise failure
        return merged

    return execute


def _result(
    exp: Experiment,
    store: Any,
    meta: dict[str, Any],
    transport: SimulatedServer,
    host: Host,
    state: Any = None,
) -> Result:
    meta["clock"] = "virtual"
    meta["loop"] = "asyncio"  # a VirtualClockLoop is asyncio's selector loop
    meta["virtual_s"] = float(transport.loop.time() - meta["t0_monotonic"])
    meta.update(host.as_dict())
    if transport.server is not None:
        meta["server"] = repr(transport.server)
    server_log = transport.log(meta["t0_monotonic"])
    return Result(
        df=store.to_frame(), experiment=exp, meta=meta, server_log=server_log,
        headers=store.headers_frame(), state=state,
    )  # fmt: skip


def _pick(
    server: LocalServer | None, host: Host, clients: int, *,
    state_interval_s: float | None = DEFAULT_INTERVAL_S, speed: float | None = None,
) -> Any:  # fmt: skip
    if clients == 1:
        return _executor(server, host, state_interval_s=state_interval_s, speed=speed)
    return _clients_executor(server, host, clients)


def simulate(
    experiment: Experiment,
    server: LocalServer | None = None,
    *,
    progress: bool = True,
    clients: int = 1,
    rtt_s: float = DEFAULT_RTT_S,
    cpu_s: float = DEFAULT_CPU_S,
    late_s: float = DEFAULT_LATE_S,
    connect_s: float = DEFAULT_CONNECT_S,
    live: bool = False,
    live_speed: float = 1.0,
    state_interval_s: float | None = DEFAULT_INTERVAL_S,
) -> Result:
    """Run ``experiment`` on a virtual clock against a simulated ``server``; return its Result.

    ``server`` is a :class:`~ratelab.LocalServer` (started or not; it is never contacted):
    its latency model and seed, ``rate_limit`` (or ``profile``: the quotas, each request's
    cost, the ``headers`` style, ``actual_cost``), ``max_concurrency``, ``overload_status``
    and ``faults`` are what is simulated; the response headers are recorded as a real run
    records them, with absolute resets on a wall clock starting at
    :data:`SIMULATION_EPOCH_S`. None: a server with no latency and no policies, for a
    loopback target (a target elsewhere needs a server model). ``clients=N`` runs N
    independent clients (each its own guards, pool and engine, with its share of the
    requests and workers as ``processes=N`` splits them; seeds ``seed + k``) on the same
    virtual loop against ONE simulated server, merged with a ``process`` column as
    ``rl.run(exp, processes=N)`` merges them: a per-client ``RateLimit(r)`` lets N x r
    through, a ``SharedRateLimit`` (simulated: an in-memory moving window shared by the
    clients, on the virtual clock) keeps them at r together. ``rtt_s`` is the fixed network
    round trip, part of every request's latency; ``cpu_s`` the host's CPU time per request,
    spent one request at a time as it arrives (requests arriving together queue for it);
    ``late_s`` how late the server's latency sleep wakes (asyncio's selector waits in whole
    milliseconds); ``connect_s`` the CPU time to open a connection (a request opens one
    when no idle connection is left, as aiohttp's connector does). The defaults are what
    ``benchmarks/bench_fidelity.py`` measured on loopback; 0 for all four is an ideal host.
    Works in scripts and in Jupyter; an
    interrupt returns the partial Result. What cannot be simulated (``processes > 1``: use
    ``clients``; uvloop; a ``SharedRateLimit`` other than the moving window) raises
    :class:`~ratelab.errors.ConfigError` before anything runs.

    ``live=True`` watches it as :func:`ratelab.run` does (the limiters' state sampled every
    ``state_interval_s`` of virtual time), with virtual time slowed to ``live_speed``
    virtual seconds per wall second (1: real time; ``math.inf``: as fast as it goes).
    ``clients > 1`` keeps no state (``result.state`` is empty).
    """
    server = check_simulation(experiment, server, rtt_s, clients=clients)
    interval = check_interval(state_interval_s)
    speed = check_speed(live_speed) if live else None
    execute = _pick(server, Host(rtt_s, cpu_s, late_s, connect_s), int(clients),
                    state_interval_s=interval, speed=speed)  # fmt: skip
    return _run_in_thread(experiment, progress, _loop, execute, live=live)


async def asimulate(
    experiment: Experiment,
    server: LocalServer | None = None,
    *,
    progress: bool = True,
    clients: int = 1,
    rtt_s: float = DEFAULT_RTT_S,
    cpu_s: float = DEFAULT_CPU_S,
    late_s: float = DEFAULT_LATE_S,
    connect_s: float = DEFAULT_CONNECT_S,
    live: bool = False,
    live_speed: float = 1.0,
    state_interval_s: float | None = DEFAULT_INTERVAL_S,
) -> Result:
    """``await rl.asimulate(exp, server)``: :func:`simulate` without blocking the caller's
    loop (the simulation runs on a virtual-clock loop in a worker thread)."""
    return await asyncio.to_thread(
        simulate, experiment, server, progress=progress, clients=clients,
        rtt_s=rtt_s, cpu_s=cpu_s, late_s=late_s, connect_s=connect_s, live=live,
        live_speed=live_speed, state_interval_s=state_interval_s,
    )  # fmt: skip
