"""The simulated server: a :class:`~ratelab.client.transports.base.Transport` that answers as
a :class:`~ratelab.server.local.LocalServer` with the same configuration would, with no
sockets, on the loop's (virtual) clock.

It reuses the LocalServer's own pieces: :class:`~ratelab.server.decide.Policy` (the
``ServerRateLimit`` limiters' ``decide(now)``, the concurrency cap, the fault draws),
:class:`~ratelab.server.decide.ServiceLatency` and
:func:`~ratelab.server.policies.rate_limit_headers`, with the generators seeded as the
LocalServer seeds them. A request, in order:

1. takes a connection from the :class:`~ratelab.simulation.pool.SimulatedPool` (aiohttp's
   ``TCPConnector`` semantics; the wait counts against the Experiment's ``timeout_s``, as
   aiohttp's total timeout does);
2. reaches the server ``rtt_s / 2`` after it is sent (``arrival_s``) and is decided as the
   LocalServer decides: rate limits (429 + ``Retry-After`` and ``RateLimit-*``, at once),
   the concurrency cap (``overload_status``, at once), the service latency, then a fault
   (error status, connection reset, stall) or the route;
3. leaves the server at ``departure_s``; the client has the answer ``rtt_s / 2`` later
   (``headers_s``), or gives up at its ``timeout_s`` (``TimeoutError``; the server logs 499
   when the hang-up reaches it, as the LocalServer does).

Every decision is taken when the request arrives, in arrival order: with a fixed round trip
that is the order requests are sent in, and every departure is known at arrival, so the
concurrency cap is kept exactly without a timer per request (a heap of departures).

Not modelled: TCP connection set-up and keep-alive, aiohttp's silent re-send of an
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
from ratelab.server.app import MAX_BYTES, MAX_DELAY_S
from ratelab.server.decide import (
    FAULT_ERROR,
    FAULT_RESET,
    FAULT_STALL,
    NO_FAULT,
    STATUS_CANCELLED,
    STATUS_NO_RESPONSE,
    FaultDraws,
    Policy,
    ServiceLatency,
)
from ratelab.server.log import RequestLog, Row
from ratelab.simulation.pool import SimulatedPool

if TYPE_CHECKING:
    from ratelab.server.local import LocalServer

__all__ = ["DEFAULT_RTT_S", "JSON_BODY_BYTES", "ServerDisconnectedError", "SimulatedServer"]

#: The simulated network round trip by default: loopback-like.
DEFAULT_RTT_S = 0.0003
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
    round trip. ``seed`` is used when the server has none. One object serves one run; its
    :meth:`log` is the server's view of it, with the LocalServer log's columns.
    """

    name = "simulated"

    def __init__(
        self, server: LocalServer | None = None, *, rtt_s: float = DEFAULT_RTT_S,
        seed: int | None = None,
    ) -> None:  # fmt: skip
        self.server = server
        self.rtt_s = float(rtt_s)
        self.half_s = self.rtt_s / 2
        self.seed = seed if server is None or server.seed is None else server.seed
        self.rows: list[Row] = []

    async def open(
        self, stamps: Stamps, *, limit: int, limit_per_host: int, timeout_s: float | None
    ) -> None:
        self.stamps = stamps
        self.loop = asyncio.get_running_loop()
        self.pool = SimulatedPool(stamps, limit=limit, limit_per_host=limit_per_host)
        self.timeout_s = timeout_s
        # fresh state, seeded as LocalServer.__init__ seeds it (spawn(3): latency, data, faults)
        latency_rng, _data_rng, fault_rng = np.random.default_rng(self.seed).spawn(3)
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
            if srv.rate_limit or srv.max_concurrency is not None or faults is not None:
                self.policy = Policy(
                    srv.rate_limit, srv.max_concurrency, srv.overload_status, faults
                )
        self.departures: list[float] = []  # of admitted requests, when a cap counts them
        self.paths: dict[str, tuple[str, tuple[int, float, int]]] = {}

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
        loop = self.loop
        pool = self.pool
        timeout_s = self.timeout_s
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
        try:
            return await self._exchange(loop, row, method, url, request_id, deadline)
        finally:
            pool.release()

    async def _exchange(
        self, loop: asyncio.AbstractEventLoop, row: int, method: str, url: str,
        request_id: str, deadline: float,
    ) -> Reply:  # fmt: skip
        half = self.half_s
        arrival = loop.time() + half
        path, (status, extra_s, nbytes) = self._path(method, url)
        decision = "ok"
        headers: dict[str, str] | None = None
        policy = self.policy
        fault = NO_FAULT
        counted = False
        service = 0.0
        answered = True  # False: a reset or a stall, no response
        if policy is not None:
            verdict = policy.rate_limit(path, arrival) if policy.limits else None
            if verdict is not None:
                allowed, headers = verdict
                if not allowed:
                    status, decision, nbytes, answered = 429, "rate_limited", 12, True
                    return await self._answer(row, request_id, method, path, arrival,
                                              arrival, status, decision, headers, nbytes,
                                              deadline)  # fmt: skip
            cap = policy.max_concurrency
            if cap is not None:
                deps = self.departures
                while deps and deps[0] <= arrival:
                    heapq.heappop(deps)
                if len(deps) >= cap:
                    status, decision, nbytes = policy.overload_status, "overloaded", 10
                    return await self._answer(row, request_id, method, path, arrival,
                                              arrival, status, decision, headers, nbytes,
                                              deadline)  # fmt: skip
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
        if departure + half > deadline:  # the client hangs up first: the server logs 499
            departure = deadline + half
            status, answered = STATUS_CANCELLED, False
        if counted:
            heapq.heappush(self.departures, departure)
        return await self._answer(row, request_id, method, path, arrival, departure, status,
                                  decision, headers if answered else None, nbytes, deadline,
                                  answered)  # fmt: skip

    async def _answer(
        self, row: int, request_id: str, method: str, path: str, arrival: float,
        departure: float, status: int, decision: str, headers: dict[str, str] | None,
        nbytes: int, deadline: float, answered: bool = True,
    ) -> Reply:  # fmt: skip
        run, rid, attempt = request_id.rsplit("-", 2)
        self.rows.append(
            (run, int(rid), int(attempt), method, path, arrival, departure, status, decision)
        )
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
        st = self.stamps
        st.store.headers_s[row] = st.now() - st.t0
        retry_after = headers.get("Retry-After") if headers is not None and status >= 400 else None
        return status, retry_after, nbytes

    def log(self, t0: float) -> pd.DataFrame:
        """The server's view of the run: the LocalServer log's columns, times from ``t0``."""
        log = RequestLog()
        log.rows = self.rows
        frame = log.frame(t0=t0)
        frame["run"] = frame["run"].cat.remove_unused_categories()
        return frame
