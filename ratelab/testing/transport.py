"""A transport with no network, for exact engine tests on the virtual clock.

    from ratelab.client.engine import Engine
    from ratelab.testing import ScriptedTransport, run_virtual

    transport = ScriptedTransport(
        latency_s=0.1, respond=lambda req: 429 if req.attempt == 1 else 200
    )
    engine = Engine(exp, base_url="http://test", transport=transport)
    store, meta = run_virtual(engine.run())
    transport.sent    # every attempt as the "server" saw it: time, url, request id, attempt

Each attempt takes a pooled connection (:class:`~ratelab.simulation.pool.SimulatedPool`:
aiohttp's ``TCPConnector`` semantics with ``limit`` and ``limit_per_host`` for one host,
stamping ``pool_queued_s``/``pool_acquired_s`` and ``sent_s`` when it waited), then
``latency_s`` on the loop's clock (the Experiment's ``timeout_s`` bounds both, as
aiohttp's total timeout does), then stamps ``headers_s`` and answers
``respond(request)``: a status, ``(status, headers)``, or an exception instance to raise
(the attempt's failure). The headers are returned to the engine (guards that read them,
such as ``rl.HeaderPacing``, see them), and ``request.cost`` is what the request's
``X-Ratelab-Cost`` said.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ratelab.client.transports.base import Reply, Stamps, Transport
from ratelab.simulation.pool import SimulatedPool

__all__ = ["ScriptedTransport", "SentRequest"]


@dataclass(frozen=True, slots=True)
class SentRequest:
    """One attempt as the scripted server saw it (``t_s`` on the run clock)."""

    t_s: float
    row: int
    method: str
    url: str
    request_id: int
    attempt: int
    #: The request's cost as sent in ``X-Ratelab-Cost`` (None: the Experiment has none).
    cost: int | None = None


Answer = int | tuple[int, Mapping[str, str]] | BaseException


class ScriptedTransport(Transport):
    """No sockets: aiohttp's pool rules, a latency on the loop's clock, scripted answers.

    ``latency_s`` is a number or a function of the :class:`SentRequest`; ``respond``
    (default: always 200) maps a SentRequest to a status, ``(status, headers)`` or an
    exception to raise; ``body_bytes`` is the size reported for every response.
    """

    name = "scripted"

    def __init__(
        self,
        *,
        latency_s: float | Callable[[SentRequest], float] = 0.0,
        respond: Callable[[SentRequest], Answer] | None = None,
        body_bytes: int = 0,
    ) -> None:
        self.latency_s = latency_s
        self.respond = respond
        self.body_bytes = body_bytes
        self.sent: list[SentRequest] = []

    async def open(
        self, stamps: Stamps, *, limit: int, limit_per_host: int, timeout_s: float | None
    ) -> None:
        self.stamps = stamps
        self.pool = SimulatedPool(stamps, limit=limit, limit_per_host=limit_per_host)
        self.timeout_s = timeout_s
        self.closed = False

    @property
    def max_in_use(self) -> int:
        """The most connections in use at once (0 before the run)."""
        pool = getattr(self, "pool", None)
        return 0 if pool is None else pool.max_in_use

    async def send(self, row: int, method: str, url: str, request_id: str) -> Reply:
        st = self.stamps
        timeout_s = self.timeout_s
        if timeout_s is None:
            await self.pool.acquire(row)
        else:  # the timeout is the attempt's total, pool wait included (as aiohttp's)
            begun = st.now()
            async with asyncio.timeout(timeout_s):
                await self.pool.acquire(row)
            timeout_s -= st.now() - begun
        try:
            _run, rid, attempt = request_id.rsplit("-", 2)
            cost = self.cost_header(row)
            req = SentRequest(
                st.at(), row, method, url, int(rid), int(attempt),
                None if cost is None else int(cost),
            )  # fmt: skip
            self.sent.append(req)
            latency = self.latency_s(req) if callable(self.latency_s) else self.latency_s
            if timeout_s is not None and latency > timeout_s:
                await asyncio.sleep(timeout_s)
                raise TimeoutError
            if latency > 0:
                await asyncio.sleep(latency)
            answer: Answer = 200 if self.respond is None else self.respond(req)
            if isinstance(answer, BaseException):
                raise answer
            status, headers = (answer, {}) if isinstance(answer, int) else answer
            st.store.headers_s[row] = st.at()
            retry_after = headers.get("Retry-After") if status >= 400 else None
            return status, retry_after, self.body_bytes, headers
        finally:
            self.pool.release()

    async def aclose(self) -> None:
        self.closed = True

    def state(self) -> dict[str, float]:
        """The simulated pool's ``in_use`` and ``queued``."""
        pool = getattr(self, "pool", None)
        return {} if pool is None else pool.state()
