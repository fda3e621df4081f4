"""The default transport: aiohttp over real sockets.

One ``aiohttp.ClientSession`` per run, built in :meth:`AiohttpTransport.open` inside the
running loop. Its ``TCPConnector`` gets the strategy's caps (``limit=0`` when there is no
``ConnectionLimit``: aiohttp's default of 100 would otherwise be a hidden strategy).

Two measured shortcuts keep the cost per request near the bare loop's:

- pool waits are stamped by :class:`_PoolStampingConnector`, whose
  ``_wait_for_available_connection`` (called by aiohttp only when the pool is full) records
  the row's queue and acquire times; the row comes from a ``ContextVar`` set by the sending
  task. A ``TraceConfig`` would fire every trace signal of every request (17 us each,
  measured). Used only when a connection limit exists: an unlimited pool never queues.
- the ``User-Agent`` and the ``X-Ratelab-Id`` join header are written by :class:`_Request`,
  a ``ClientRequest`` subclass, instead of merged ``headers=`` dicts (~2-3 us per request).

Redirects are not followed (``allow_redirects=False``; httpx does not follow them by
default either): one attempt is one request on the wire, and a 3xx is the attempt's row.
So the requests a run can send are its attempts, which the polite check counts
(:mod:`ratelab.experiment.polite`), and a redirect cannot take a run to another host. A
request function (``request=fn``) sends with ``ctx.client`` as it likes: what it follows
is its own.

The body is counted while it streams (``readany`` until EOF), never held whole: a 50 MB
response costs a chunk of memory, not 50 MB per worker.

An attempt that began waiting for a pooled connection and never got one (its timeout, a
cancel) gets ``pool_acquired_s`` and ``sent_s`` NaN: it was never sent, so it has no latency.
"""

from __future__ import annotations

import base64
import math
from contextvars import ContextVar
from typing import Any

import aiohttp
import numpy as np
from aiohttp import hdrs

from ratelab.client.transports.base import (
    COST_HEADER,
    ID_HEADER,
    Reply,
    RequestSpec,
    Stamps,
    Transport,
    user_agent,
)

__all__ = ["ID_HEADER", "USER_AGENT", "AiohttpTransport", "error_name"]

#: Every request names ratelab (politeness towards hosts that are not this machine).
USER_AGENT = user_agent("aiohttp")

#: The row of the attempt the current task is sending (read by the pool-stamping connector).
_current_row: ContextVar[int] = ContextVar("ratelab_row", default=-1)
#: The ``X-Ratelab-Id`` value of the attempt the current task is sending (read by _Request).
_current_id: ContextVar[str | None] = ContextVar("ratelab_id", default=None)
#: The ``X-Ratelab-Cost`` value of that attempt (None: no cost; read by _Request).
_current_cost: ContextVar[str | None] = ContextVar("ratelab_cost", default=None)


def error_name(exc: BaseException) -> str:
    """The ``error`` value of a failed attempt: the exception's class name, except that a
    connection failure names its OS-level cause (``ConnectionRefusedError``, ...)."""
    if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(
        exc, aiohttp.ClientConnectorDNSError
    ):
        cause = exc.os_error
        if type(cause) is not OSError:
            return type(cause).__name__
    return type(exc).__name__


class _PoolStampingConnector(aiohttp.TCPConnector):
    """A TCPConnector that records, for the attempt being sent, when it began waiting for a
    pooled connection and when it got one (= when the request went out)."""

    def __init__(self, stamps: Stamps, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stamps = stamps

    async def _wait_for_available_connection(self, key: Any, traces: Any) -> None:
        st, row = self._stamps, _current_row.get()
        store = st.store
        if row >= 0 and np.isnan(store.pool_queued_s[row]):  # the first wait counts
            store.pool_queued_s[row] = st.now() - st.t0
        try:
            await super()._wait_for_available_connection(key, traces)
        except BaseException:  # never got a connection: never sent
            if row >= 0:
                store.pool_acquired_s[row] = math.nan
                store.sent_s[row] = math.nan
            raise
        if row >= 0:
            t = st.now() - st.t0
            store.pool_acquired_s[row] = t
            store.sent_s[row] = t


class _Request(aiohttp.ClientRequest):
    """aiohttp's request with ratelab's User-Agent and the attempt's id header written in
    directly (two entries, no copy of the session's default headers, no dict merge)."""

    def update_auto_headers(self, skip_auto_headers: Any) -> None:
        headers = self.headers
        if hdrs.USER_AGENT not in headers:
            headers[hdrs.USER_AGENT] = USER_AGENT
        rid = _current_id.get()
        if rid is not None:
            headers[ID_HEADER] = rid
        cost = _current_cost.get()
        if cost is not None:
            headers[COST_HEADER] = cost
        super().update_auto_headers(skip_auto_headers)


class _HeaderStampingResponse(aiohttp.ClientResponse):
    """aiohttp's response, stamping ``headers_s`` of the current task's row when the headers
    have arrived (used under a request function, whose code reads the response itself)."""

    _stamps: Stamps

    async def start(self, connection: Any) -> Any:
        out = await super().start(connection)
        row = _current_row.get()
        if row >= 0:
            st = self._stamps
            st.store.headers_s[row] = st.now() - st.t0
        return out


def _request_kwargs(spec: RequestSpec) -> dict[str, Any]:
    kw: dict[str, Any] = {"allow_redirects": False}  # one attempt, one request (module doc)
    if spec.headers:
        kw["headers"] = dict(spec.headers)
    if spec.json is not None:
        kw["json"] = spec.json
    if spec.data is not None:
        kw["data"] = spec.data if isinstance(spec.data, str) else dict(spec.data)
    if spec.auth is not None:  # basic auth as a header (aiohttp.BasicAuth is deprecated)
        token = base64.b64encode(f"{spec.auth[0]}:{spec.auth[1]}".encode()).decode()
        kw["headers"] = {"Authorization": f"Basic {token}", **kw.get("headers", {})}
    return kw


class AiohttpTransport(Transport):
    """aiohttp over real sockets (the default transport)."""

    name = "aiohttp"
    #: Stamp ``headers_s`` in the response class (a request function reads the response).
    stamp_headers = False

    async def open(
        self, stamps: Stamps, *, limit: int, limit_per_host: int, timeout_s: float | None
    ) -> None:
        self.stamps = stamps
        self._store, self._now = stamps.store, stamps.now  # fixed for the run (t0 is not)
        limits = {"limit": limit, "limit_per_host": limit_per_host}
        self._stamp_pool = bool(limit or limit_per_host)  # an unlimited pool never waits
        if self._stamp_pool:
            connector: aiohttp.TCPConnector = _PoolStampingConnector(stamps, **limits)
        else:
            connector = aiohttp.TCPConnector(**limits)
        self._kwargs = {url: _request_kwargs(spec) for url, spec in self.specs.items()}
        extra: dict[str, Any] = {}
        if self.stamp_headers:
            extra["response_class"] = type(
                "_Response", (_HeaderStampingResponse,), {"_stamps": stamps}
            )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            request_class=_Request,  # adds the User-Agent and the X-Ratelab-Id header
            **extra,
        )

    def bind(self, row: int, request_id: str) -> None:
        """The current task sends ``row`` (for a request function using the session): its
        pool wait, headers time, ``X-Ratelab-Id`` and ``X-Ratelab-Cost`` go to that row."""
        _current_id.set(request_id)
        _current_row.set(row)
        if self.send_costs:
            _current_cost.set(self.cost_header(row))

    async def send(self, row: int, method: str, url: str, request_id: str) -> Reply:
        _current_id.set(request_id)
        if self.send_costs:
            _current_cost.set(self.cost_header(row))
        if self._stamp_pool:
            _current_row.set(row)
        kwargs = self._kwargs.get(url) if self._kwargs else None
        store = self._store
        async with (
            self.session.request(method, url, allow_redirects=False)
            if kwargs is None
            else self.session.request(method, url, **kwargs)
        ) as resp:
            store.headers_s[row] = self._now() - self.stamps.t0
            status = resp.status
            headers = resp.headers
            self.header_names.record(store, row, headers)
            retry_after = headers.get(hdrs.RETRY_AFTER) if status >= 400 else None
            content = resp.content  # counted while it streams, never held whole
            nbytes = 0
            while not content.at_eof():
                nbytes += len(await content.readany())
        return status, retry_after, nbytes, headers

    def error_name(self, exc: BaseException) -> str:
        return error_name(exc)

    async def aclose(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            await session.close()

    def state(self) -> dict[str, float]:
        """``in_use``: the connector's connections taken; ``queued``: requests waiting for
        one (aiohttp's ``_acquired`` and ``_waiters``; read only)."""
        session = getattr(self, "session", None)
        if session is None:
            return {}
        conn: Any = session.connector
        queued = sum(len(w) for w in conn._waiters.values())
        return {"in_use": float(len(conn._acquired)), "queued": float(queued)}
