"""One probe's requests: sent one at a time through a transport (the engine's seam), never
more than the budget, never closer together than the polite gap, each one a row.

A :class:`ProbeSession` owns a :class:`~ratelab.records.store.RecordStore` for the transport
to stamp into (as an Engine would), opens the transport with one connection, and sends
``GET url`` when asked. Time is the running loop's clock (``loop.time()``), so the same
session runs over aiohttp against a real server and over a
:class:`~ratelab.simulation.server.SimulatedServer` on a virtual clock. What each request
said is an :class:`Observation`: when it was sent and answered, its status, the
``Retry-After`` it carried (``retry_after_s``; ``precise`` when it came in milliseconds) and
its headers. A request that fails (refused connection, timeout) is an observation with an
``error``; :meth:`ProbeSession.send` raises :class:`BudgetSpent` when the budget is used up.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ratelab.client.loops import stamp_clock
from ratelab.client.transports.base import HeaderNames, Stamps
from ratelab.protocol.header_reading import retry_after_s
from ratelab.protocol.wall_clock import epoch_s
from ratelab.records.store import RecordStore

if TYPE_CHECKING:
    from ratelab.client.transports.base import Transport

__all__ = ["BudgetSpent", "Observation", "ProbeSession"]

#: Each request's total timeout.
TIMEOUT_S = 10.0
_PRECISE = ("x-retry-after-ms", "retry-after-ms")


class BudgetSpent(Exception):
    """The probe's budget of requests is used up."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What one probe request saw. Times are seconds from the probe's start on the loop's
    clock; ``status`` is 0 when the request failed (``error`` names why)."""

    i: int
    phase: str
    sent_s: float
    done_s: float
    status: int
    retry_after_s: float | None
    precise: bool
    error: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        return self.status == 429


class ProbeSession:
    """Send ``GET url`` through ``transport``, one request at a time (see the module doc).
    ``budget``: the most requests; ``gap_s``: the least time between two sends."""

    def __init__(self, transport: Transport, url: str, *, budget: int, gap_s: float) -> None:
        self.transport = transport
        self.url = url
        self.budget = budget
        self.gap_s = gap_s
        self.observations: list[Observation] = []
        self.run = secrets.token_hex(4)
        self._last_sent = -math.inf

    @property
    def used(self) -> int:
        return len(self.observations)

    @property
    def left(self) -> int:
        return self.budget - self.used

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        path = urlsplit(self.url).path or "/"
        self.store = RecordStore(self.budget, endpoints=[path], methods=["GET"])
        self.now = stamp_clock(loop)
        self.stamps = Stamps(self.store, self.now)
        self.transport.send_costs = False
        self.transport.prepare(specs={}, header_names=HeaderNames())
        await self.transport.open(self.stamps, limit=1, limit_per_host=0, timeout_s=TIMEOUT_S)
        self.t0 = loop.time()
        self.stamps.t0 = self.now()

    async def aclose(self) -> None:
        await self.transport.aclose()

    def time(self) -> float:
        """Seconds since the probe started, on the loop's clock."""
        return self.loop.time() - self.t0

    async def sleep_until(self, t_s: float) -> None:
        delay = t_s - self.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def send(self, phase: str) -> Observation:
        """Send one request (after the polite gap, if any) and return what it saw."""
        if self.used >= self.budget:
            raise BudgetSpent
        await self.sleep_until(self._last_sent + self.gap_s)
        row = self.used
        sent = self.time()
        self._last_sent = sent
        status, retry, precise, error = 0, None, False, None
        headers: Mapping[str, str] = {}
        try:
            reply = await self.transport.send(row, "GET", self.url, f"{self.run}-{row}-1")
        except Exception as e:  # a failed request is an observation
            error = self.transport.error_name(e)
        else:
            status = reply[0]
            got = reply[3] if len(reply) > 3 else None
            headers = dict(got.items()) if got is not None else {}
            if status >= 400:
                retry = retry_after_s(headers, now_epoch_s=epoch_s(self.loop))
                if retry is None and reply[1] is not None:
                    retry = retry_after_s({"Retry-After": reply[1]}, now_epoch_s=epoch_s())
                precise = any(k.lower() in _PRECISE for k in headers)
        obs = Observation(row, phase, sent, self.time(), status, retry, precise, error, headers)
        self.observations.append(obs)
        return obs
