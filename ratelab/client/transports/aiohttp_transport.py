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
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import aiohttp
import numpy as np
from aiohttp import hdrs

from ratelab.client.transports.base import ID_HEADER, Reply, Stamps, Transport, user_agent

__all__ = ["ID_HEADER", "USER_AGENT", "AiohttpTransport", "error_name"]

#: Every request names ratelab (politeness towards hosts that are not this machine).
USER_AGENT = user_agent("aiohttp")

#: The row of the attempt the current task is sending (read by the pool-stamping connector).
_current_row: ContextVar[int] = ContextVar("ratelab_row", default=-1)
#: The ``X-Ratelab-Id`` value of the attempt the current task is sending (read by _Request).
_current_id: ContextVar[str | None] = ContextVar("ratelab_id", default=None)


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
        await super()._wait_for_available_connection(key, traces)
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
        super().update_auto_headers(skip_auto_headers)


class AiohttpTransport(Transport):
    """aiohttp over real sockets (the default transport)."""

    name = "aiohttp"

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
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            request_class=_Request,  # adds the User-Agent and the X-Ratelab-Id header
        )

    async def send(self, row: int, method: str, url: str, request_id: str) -> Reply:
        _current_id.set(request_id)
        if self._stamp_pool:
            _current_row.set(row)
        async with self.session.request(method, url) as resp:
            st = self.stamps
            self._store.headers_s[row] = self._now() - st.t0
            status = resp.status
            retry_after = resp.headers.get(hdrs.RETRY_AFTER) if status >= 400 else None
            body = await resp.read()
        return status, retry_after, len(body)

    def error_name(self, exc: BaseException) -> str:
        return error_name(exc)

    async def aclose(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            await session.close()
