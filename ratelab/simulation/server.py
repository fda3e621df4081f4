"""The simulated server: a :class:`~ratelab.client.transports.base.Transport` that answers as
a :class:`~ratelab.server.local.LocalServer` with the same configuration would, with no
sockets, on the loop's (virtual) clock.

It reuses the LocalServer's own pieces: :class:`~ratelab.server.decide.Policy` (the
``ServerRateLimit`` quotas checked and charged atomically, with each request's cost, in
the server's header style; the concurrency cap; the fault draws; the actual-cost draws),
:class:`~ratelab.server.decide.ServiceLatency`, with the generators seeded as the
LocalServer seeds them. A request's cost is the ``X-Ratelab-Cost`` its attempt carries
(the run's ``cost`` column when the records have one, else the endpoint's request
headers; 1 without either). Absolute resets (GitHub, Anthropic) are written against the
loop's wall clock (:func:`ratelab.protocol.wall_clock.epoch_s`). The response's rate-limit
headers are recorded as a real transport records them (``Experiment.record_headers``). A
concurrency quota's slot is released, and the unused cost refunded, at the request's
departure, in departure order before the next arrival is decided. A request, in order:

1. takes a connection from the :class:`~ratelab.simulation.pool.SimulatedPool` (aiohttp's
   ``TCPConnector`` semantics; the wait counts against the Experiment's ``timeout_s``, as
   aiohttp's total timeout does);
2. reaches the server ``rtt_s / 2`` after it is sent (``arrival_s``) and is decided as the
   LocalServer decides: rate limits (429 + ``Retry-After`` and the style's headers, at once),
   the concurrency cap (``overload_status``, at once), the service latency, then a fault
   (error status, connection reset, stall) or the route;
3. leaves the server at ``departure_s``; the client has the answer ``rtt_s / 2`` later
   (``headers_s``), or gives up at its ``timeout_s`` (``TimeoutError``; the server logs 499
   when the hang-up reaches it, as the LocalServer does).

Every decision is taken when the request arrives, in arrival order: with a fixed round trip
that is the order requests are sent in, and every departure is known at arrival, so the
concurrency cap is kept exactly without a timer per request (a heap of departures).

The host is modelled by four timings (defaults measured on loopback by
``benchmarks/bench_fidelity.py``; all 0 is an ideal host): ``rtt_s``, ``cpu_s`` (the CPU
time of a request, one at a time: a burst queues), ``late_s`` (a latency sleep wakes that
late) and ``connect_s`` (a fresh connection's CPU, plus a round trip; connections are
reused as aiohttp's connector reuses them, the last released first, up to
:data:`KEEPALIVE_S` idle).

Not modelled: aiohttp's silent re-send of an
idempotent request after a reset, and the exact size of the JSON bodies (``bytes`` is the
size of ``/bytes/{n}``, 0 for ``/status/{code}``, and :data:`JSON_BODY_BYTES` for the JSON
routes).
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ratelab.client.transports.base import Reply, Stamps, Transport
from ratelab.protocol.quota import COST_HEADER
from ratelab.protocol.wall_clock import epoch_s
from ratelab.server.app import MAX_BYTES, MAX_DELAY_S
from ratelab.server.decide import (
    FAULT_ERROR,
    FAULT_RESET,
    FAULT_STALL,
    NO_FAULT,
    STATUS_BAD_REQUEST,
    STATUS_CANCELLED,
    STATUS_NO_RESPONSE,
    Admission,
    FaultDraws,
    Policy,
    ServiceLatency,
    cost_error,
    parse_cost,
)
from ratelab.server.log import RequestLog, Row
from ratelab.simulation.pool import SimulatedPool

if TYPE_CHECKING:
    from ratelab.server.local import LocalServer

__all__ = [
    "DEFAULT_CONNECT_S",
    "DEFAULT_CPU_S",
    "DEFAULT_LATE_S",
    "DEFAULT_RTT_S",
    "JSON_BODY_BYTES",
    "KEEPALIVE_S",
    "ServerDisconnectedError",
    "SimulatedClient",
    "SimulatedServer",
]

#: The simulated network round trip by default: loopback, with the part of both aiohttp
#: stacks' per-request work that does not queue (measured: ``benchmarks/bench_fidelity.py``).
DEFAULT_RTT_S = 0.0006
#: The host's CPU time per request by default (the server's parsing, routing, logging and
#: answer, and the client's own work, on one core at a time): requests arriving together
#: queue for it. Measured on loopback by ``benchmarks/bench_fidelity.py``.
DEFAULT_CPU_S = 0.0002
#: How late a server's latency sleep ends by default: asyncio's selector loop waits in whole
#: milliseconds, rounded up, and then runs what is ready.
DEFAULT_LATE_S = 0.0009
#: The host's CPU time to open a connection by default (both ends' connect, accept and
#: set-up), spent as ``cpu_s`` is, plus one round trip for the handshake.
DEFAULT_CONNECT_S = 0.0006
#: aiohttp's ``TCPConnector(keepalive_timeout=15)``: an idle connection older is not reused.
KEEPALIVE_S = 15.0
#: The ``bytes`` recorded for a JSON route's answer (the LocalServer's echo is about this).
JSON_BODY_BYTES = 300


class ServerDisconnectedError(ConnectionError):
    """The simulated server dropped the connection (an injected reset); named as aiohttp
    names it, so the ``error`` column reads as in a real run."""


_JSON_GET = ("/get", "/uuid", "/headers")


def _route(method: str, path: str) -> tuple[int, float, int]:
    """(status, extra service seconds, body bytes) of the LocalServer's routes."""
    if path in _JSON_GET:
        return (200, 0.0, JSON_BODY_BYTES) if method in ("GET", "HEAD") else (405, 0.0, 0)
    if path == "/anything" or path.startswith("/anything/"):
        return 200, 0.0, JSON_BODY_BYTES
    head, _, arg = path[1:].partition("/")
    if "/" in arg or not arg:
        return 404, 0.0, 0
    if head == "status":
        try:
            code = int(arg)
        except ValueError:
            return 400, 0.0, 0
        return (code, 0.0, 0) if 200 <= code <= 599 else (400, 0.0, 0)
    if head == "delay":
        try:
            seconds = float(arg)
        except ValueError:
            return 400, 0.0, 0
        if not (math.isfinite(seconds) and seconds >= 0):
            return 400, 0.0, 0
        return 200, min(seconds, MAX_DELAY_S), JSON_BODY_BYTES
    if head == "bytes":
        if method not in ("GET", "HEAD"):
            return 405, 0.0, 0
        try:
            n = int(arg)
        except ValueError:
            return 400, 0.0, 0
        return (200, 0.0, min(n, MAX_BYTES)) if n >= 0 else (400, 0.0, 0)
    return 404, 0.0, 0


class SimulatedServer(Transport):
    """A LocalServer's configuration answered on the loop's clock (see the module doc).

    ``server`` (a :class:`~ratelab.LocalServer`, started or not, never contacted; None: no
    latency, no policies) gives the latency model and its ``seed``, ``rate_limit``,
    ``max_concurrency``, ``overload_status`` and ``faults``; ``rtt_s`` is the fixed network
    round trip; ``cpu_s`` the host's CPU time per request, spent one request at a time
    before the server decides (so requests arriving together queue for it); ``late_s`` how
    late the server's latency sleep wakes; ``connect_s`` the CPU time to open a connection
    (taken when no idle connection younger than :data:`KEEPALIVE_S` is left, the last
    released first, as aiohttp's connector does), plus a round trip. ``seed`` is used when
    the server has none. One object serves one run (:meth:`client` gives it more clients);
    its :meth:`log` is the server's view of it, with the LocalServer log's columns.
    """

    name = "simulated"

    def __init__(
        self, server: LocalServer | None = None, *, rtt_s: float = DEFAULT_RTT_S,
        cpu_s: float = DEFAULT_CPU_S, late_s: float = DEFAULT_LATE_S,
        connect_s: float = DEFAULT_CONNECT_S, seed: int | None = None,
    ) -> None:  # fmt: skip
        self.server = server
        self.rtt_s = float(rtt_s)
        self.cpu_s = float(cpu_s)
        self.late_s = float(late_s)
        self.connect_s = float(connect_s)
        self.cpu_free_s = -math.inf  # when the host's CPU is next free
        self.half_s = self.rtt_s / 2
        self.seed = seed if server is None or server.seed is None else server.seed
        self.rows: list[Row] = []
        self.started = False

    async def open(
        self, stamps: Stamps, *, limit: int, limit_per_host: int, timeout_s: float | None
    ) -> None:
        _open_client(self, stamps, limit, limit_per_host, timeout_s)
        self._start()

    def _start(self) -> None:
        """Fresh server state, once per run (every client shares it), seeded as
        LocalServer.__init__ seeds it (spawn(3): latency, data, faults)."""
        if self.started:
            return
        self.started = True
        from ratelab.server.local import make_policy

        rngs = np.random.default_rng(self.seed).spawn(4)
        latency_rng, _data_rng, fault_rng, actual_rng = rngs
        srv = self.server
        self.latency = None
        self.policy: Policy | None = None
        if srv is not None:
            if srv.latency is not None:
                self.latency = ServiceLatency(srv.latency, latency_rng)
            faults = None
            if srv.faults is not None and srv.faults.active:
                if srv.faults.seed is not None:
                    fault_rng = np.random.default_rng(srv.faults.seed)
                faults = FaultDraws(srv.faults, fault_rng)
            self.policy = make_policy(srv, faults, actual_rng)
        self.finishing: list[tuple[float, int, Admission]] = []  # (departure, seq, admission)
        self.seq = 0
        self.cpu_free_s = -math.inf
        self.departures: list[float] = []  # of admitted requests, when a cap counts them
        self.paths: dict[str, tuple[str, tuple[int, float, int]]] = {}

    def client(self) -> SimulatedClient:
        """Another client of this server (its own pool and connections, as another process
        would have): a Transport for another Engine on the same loop."""
        return SimulatedClient(self)

    def _path(self, method: str, url: str) -> tuple[str, tuple[int, float, int]]:
        key = method + " " + url
        hit = self.paths.get(key)
        if hit is None:
            rest = url.split("://", 1)[-1]
            slash = rest.find("/")
            path = rest[slash:].split("?", 1)[0] if slash >= 0 else "/"
            hit = self.paths[key] = (path, _route(method, path))
        return hit

    async def send(self, row: int, method: str, url: str, request_id: str) -> Reply:
        return await _send(self, self, row, method, url, request_id)

    def _finish_until(self, now: float) -> None:
        """Release and refund, in departure order, what left the server by ``now``."""
        finishing, policy = self.finishing, self.policy
        while finishing and finishing[0][0] <= now:
            departure, _, adm = heapq.heappop(finishing)
            policy.finish(adm, departure)  # type: ignore[union-attr]

    def state(self) -> dict[str, float]:
        """This client's simulated pool: ``in_use`` and ``queued``."""
        pool = getattr(self, "pool", None)
        return {} if pool is None else pool.state()

    async def _exchange(
        self, loop: asyncio.AbstractEventLoop, row: int, method: str, url: str,
        request_id: str, deadline: float, fresh: bool, c: SimulatedServer | SimulatedClient,
    ) -> Reply:  # fmt: skip
        half = self.half_s
        arrival = loop.time() + half
        cpu_s = self.cpu_s
        if fresh and self.connect_s:  # the handshake's round trip, then its CPU
            arrival += self.rtt_s
            cpu_s += self.connect_s
        if cpu_s:  # one request at a time on the host's CPU, in arrival order
            arrival = max(arrival, self.cpu_free_s) + cpu_s
            self.cpu_free_s = arrival
        path, (status, extra_s, nbytes) = self._path(method, url)
        decision = "ok"
        headers: dict[str, str] | None = None
        policy = self.policy
        fault = NO_FAULT
        counted = False
        service = 0.0
        answered = True  # False: a reset or a stall, no response
        cost, raw = _cost(c, row, url)
        costs = (-1, 0) if cost is None else (cost, cost)
        adm: Admission | None = None
        if cost is None:
            nbytes = len(cost_error(raw).encode())
            return await self._answer(row, request_id, method, path, arrival, arrival,
                                      STATUS_BAD_REQUEST, "bad_request", None, nbytes,
                                      deadline, c, costs=costs)  # fmt: skip
        if policy is not None:
            if policy.limits:
                if self.finishing:
                    self._finish_until(arrival)
                now_epoch = epoch_s(loop) + (arrival - loop.time())
                adm = policy.admit(path, arrival, cost, now_epoch)
            if adm is not None:
                headers = adm.headers
                if not adm.allowed:
                    status, decision, answered = 429, "rate_limited", True
                    nbytes = 12 if adm.body is None else len(adm.body[1])
                    return await self._answer(row, request_id, method, path, arrival,
                                              arrival, status, decision, headers, nbytes,
                                              deadline, c, costs=(cost, 0))  # fmt: skip
                costs = (cost, adm.cost_actual())
            cap = policy.max_concurrency
            if cap is not None:
                deps = self.departures
                while deps and deps[0] <= arrival:
                    heapq.heappop(deps)
                if len(deps) >= cap:
                    status, decision, nbytes = policy.overload_status, "overloaded", 10
                    if adm is not None and adm.pending:  # as the LocalServer: at once
                        policy.finish(adm, arrival)
                    return await self._answer(row, request_id, method, path, arrival,
                                              arrival, status, decision, headers, nbytes,
                                              deadline, c, costs=(cost, 0))  # fmt: skip
                counted = True
            if policy.faults is not None:
                fault = policy.faults.next()
        if self.latency is not None:
            service = self.latency.next()
        if fault != NO_FAULT:
            decision = "fault"
            if fault == FAULT_ERROR:
                status, extra_s, nbytes = policy.faults.faults.status, 0.0, 0  # type: ignore[union-attr]
            elif fault == FAULT_RESET:
                status, extra_s, answered = STATUS_NO_RESPONSE, 0.0, False
            else:  # FAULT_STALL: never answered
                assert fault == FAULT_STALL
                status, service, extra_s, answered = STATUS_CANCELLED, math.inf, 0.0, False
        departure = arrival + service + extra_s
        if self.late_s and departure > arrival:
            departure += self.late_s
        if departure + half > deadline:  # the client hangs up first: the server logs 499
            departure = deadline + half
            status, answered = STATUS_CANCELLED, False
        if counted:
            heapq.heappush(self.departures, departure)
        if adm is not None and adm.pending:
            self.seq += 1
            heapq.heappush(self.finishing, (departure, self.seq, adm))
        return await self._answer(row, request_id, method, path, arrival, departure, status,
                                  decision, headers if answered else None, nbytes, deadline,
                                  c, answered, costs=costs)  # fmt: skip

    async def _answer(
        self, row: int, request_id: str, method: str, path: str, arrival: float,
        departure: float, status: int, decision: str, headers: dict[str, str] | None,
        nbytes: int, deadline: float, c: SimulatedServer | SimulatedClient,
        answered: bool = True, *, costs: tuple[int, int],
    ) -> Reply:  # fmt: skip
        stamps = c.stamps
        run, rid, attempt = request_id.rsplit("-", 2)
        self.rows.append((run, int(rid), int(attempt), method, path, arrival, departure,
                          status, decision, *costs))  # fmt: skip
        loop = self.loop
        back = departure + self.half_s
        if not answered:
            if deadline < back or status == STATUS_CANCELLED:  # the client's timeout
                await asyncio.sleep(deadline - loop.time())
                raise TimeoutError
            await asyncio.sleep(back - loop.time())  # a reset reaches the client
            raise ServerDisconnectedError("Server disconnected")
        delay = back - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        stamps.store.headers_s[row] = stamps.now() - stamps.t0
        if headers:
            _record(c, stamps.store.header_rows, row, headers)
        retry_after = headers.get("Retry-After") if headers is not None and status >= 400 else None
        return status, retry_after, nbytes, headers  # the headers: for guards that read them

    def log(self, t0: float) -> pd.DataFrame:
        """The server's view of the run: the LocalServer log's columns, times from ``t0``."""
        log = RequestLog()
        log.rows = self.rows
        frame = log.frame(t0=t0)
        frame["run"] = frame["run"].cat.remove_unused_categories()
        return frame


class SimulatedClient(Transport):
    """Another client of a :class:`SimulatedServer` (see :meth:`SimulatedServer.client`): its
    own pool, connections and stamps; the server's state, clock and log are shared."""

    name = "simulated"

    def __init__(self, server: SimulatedServer) -> None:
        self.server = server

    async def open(
        self, stamps: Stamps, *, limit: int, limit_per_host: int, timeout_s: float | None
    ) -> None:
        _open_client(self, stamps, limit, limit_per_host, timeout_s)
        self.server._start()

    async def send(self, row: int, method: str, url: str, request_id: str) -> Reply:
        return await _send(self, self.server, row, method, url, request_id)

    def state(self) -> dict[str, float]:
        """This client's simulated pool: ``in_use`` and ``queued``."""
        pool = getattr(self, "pool", None)
        return {} if pool is None else pool.state()


def _record(
    c: SimulatedServer | SimulatedClient, rows: list[tuple[int, str, str]], row: int,
    headers: dict[str, str],
) -> None:  # fmt: skip
    """Record the response headers a real transport would (``HeaderNames.wanted``), with
    the choice of names made once per set of names (a style sends the same names)."""
    names = getattr(c, "header_names", None)
    if names is None:
        return
    cache: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = c.__dict__.setdefault("_wanted", {})
    keys = tuple(headers)
    wanted = cache.get(keys)
    if wanted is None:
        wanted = cache[keys] = tuple((k, k.lower()) for k in keys if names.wanted(k))
    for key, lower in wanted:
        rows.append((row, lower, headers[key]))


def _cost(c: SimulatedServer | SimulatedClient, row: int, url: str) -> tuple[int | None, str]:
    """The cost an attempt declares (as :func:`ratelab.server.decide.parse_cost` reads the
    header) and the header's text: the records' ``cost`` column when they have one, else
    the endpoint's ``X-Ratelab-Cost`` request header, else 1; None if unreadable."""
    column = getattr(c.stamps.store, "cost", None)
    if column is not None:
        value = column[row]
        if value == value:  # not NaN
            text = str(int(value)) if value >= 0 else str(value)
            return parse_cost(text), text
    specs = getattr(c, "specs", None)
    spec = specs.get(url) if specs else None
    if spec is not None and spec.headers:
        for name, text in spec.headers.items():
            if name.lower() == COST_HEADER.lower():
                return parse_cost(text), text
    return 1, "1"


def _open_client(
    c: SimulatedServer | SimulatedClient, stamps: Stamps, limit: int, limit_per_host: int,
    timeout_s: float | None,
) -> None:  # fmt: skip
    c.stamps = stamps
    c.loop = asyncio.get_running_loop()
    c.pool = SimulatedPool(stamps, limit=limit, limit_per_host=limit_per_host)
    c.timeout_s = timeout_s
    c.idle = []  # release times of the idle connections (the last released on top)


async def _send(
    c: SimulatedServer | SimulatedClient, server: SimulatedServer, row: int, method: str,
    url: str, request_id: str,
) -> Reply:  # fmt: skip
    """One request of client ``c``: a connection from its pool (reused, or opened), then
    the exchange with ``server``."""
    loop = c.loop
    pool = c.pool
    timeout_s = c.timeout_s
    deadline = math.inf
    if timeout_s is not None:
        deadline = loop.time() + timeout_s
        if pool.cap and pool.in_use >= pool.cap:  # aiohttp's total timeout covers it
            async with asyncio.timeout_at(deadline):
                await pool.acquire(row)
        else:
            await pool.acquire(row)
    else:
        await pool.acquire(row)
    fresh = True  # no idle connection young enough: a new one
    idle = c.idle
    if idle:
        if loop.time() - idle[-1] <= KEEPALIVE_S:
            idle.pop()
            fresh = False
        else:  # the last released is too old: so are all the others
            idle.clear()
    try:
        return await server._exchange(loop, row, method, url, request_id, deadline, fresh, c)
    finally:
        pool.release()
        idle.append(loop.time())
