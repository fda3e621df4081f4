"""httpx as the client: ``Experiment(client="httpx")`` (needs ``pip install 'ratelab[httpx]'``).

One ``httpx.AsyncClient`` per run, built in :meth:`HttpxTransport.open` inside the running
loop, on an ``httpx.AsyncHTTPTransport`` (no proxies from the environment, as with aiohttp).

Connection caps. httpx (httpcore) has one cap for the whole pool and none per host, so
``ConnectionLimit(n, per_host=m)`` becomes ``httpx.Limits(max_connections=min(n, m))``
(the nonzero ones; none: unlimited, ``max_connections=None``; httpx's default of 100 would
otherwise be a hidden strategy). That is exact for ratelab, since every request of an
Experiment goes to its one target host. ``max_keepalive_connections`` is the same number,
so a connection is never closed for being idle beyond httpx's default 20.

Timeout. ``timeout_s`` is the attempt's *total* time, as with aiohttp's
``ClientTimeout(total=)``: the whole attempt (pool wait, connect, request, headers, body)
runs under ``asyncio.timeout(timeout_s)``, and a late attempt's row says ``TimeoutError``.
httpx's own per-phase timeouts (``httpx.Timeout``) are switched off: each bounds one phase
only (connect, each read, the pool wait), so an attempt could take several times
``timeout_s``; and each arms a timer of its own per read.

Pool waits. httpcore queues a request that finds no free connection in
``AsyncConnectionPool``. :class:`_PoolStampingPool` subclasses it:
``_assign_requests_to_connections`` runs first in the sending task right after httpcore
queued the new request (no ``await`` in between), so if that request is still without a
connection it waited: ``pool_queued_s``. The wait ends when the task resumes and hands the
request to a connection, :meth:`_StampingConnection.handle_async_request` (the pool makes
its connections through ``create_connection``): ``pool_acquired_s`` and ``sent_s``. The
row travels in a ``ContextVar`` set by the sending task. Used only when a connection limit
exists (an unlimited pool never queues). httpx's ``trace`` extension would also show it, but
it calls an async callback for every event of every request (about 12 per request; measured
in ``benchmarks/README.md``).

The body is counted while it streams (``aiter_bytes``), never held whole. An attempt that
began waiting for a pooled connection and never got one keeps ``pool_acquired_s`` NaN, and
the engine then sets its ``sent_s`` NaN (it was never sent).

Errors are named as with aiohttp: the exception's class, except that a connection failure
names its OS-level cause (``ConnectionRefusedError``, ...).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx
import numpy as np

from ratelab.client.transports.base import (
    COST_HEADER,
    ID_HEADER,
    Reply,
    RequestSpec,
    Stamps,
    Transport,
    single_host_cap,
    user_agent,
)

__all__ = ["USER_AGENT", "HttpxTransport", "error_name", "httpx_limits"]

USER_AGENT = user_agent("httpx")

#: The row of the attempt this task is sending, until the pool has decided whether it waits.
_pending_row: ContextVar[int] = ContextVar("ratelab_httpx_pending_row", default=-1)
#: The row the current task is sending (kept for the whole attempt).
_sending_row: ContextVar[int] = ContextVar("ratelab_httpx_sending_row", default=-1)
#: The row of the attempt this task is sending, while it waits for a pooled connection.
_waiting_row: ContextVar[int] = ContextVar("ratelab_httpx_waiting_row", default=-1)
#: The row whose ``headers_s`` the response hook stamps (under a request function).
_headers_row: ContextVar[int] = ContextVar("ratelab_httpx_headers_row", default=-1)


def httpx_limits(limit: int, limit_per_host: int) -> httpx.Limits:
    """The strategy's caps (0: none) as httpx's pool limits: the tighter of the two, since
    httpx has no per-host cap and an Experiment has one host."""
    n = single_host_cap(limit, limit_per_host) or None
    return httpx.Limits(max_connections=n, max_keepalive_connections=n)


def error_name(exc: BaseException) -> str:
    """The ``error`` value of a failed attempt: the exception's class name, except that a
    connection failure names its OS-level cause (``ConnectionRefusedError``, ...), found
    down the exception's chain (httpx.ConnectError <- httpcore.ConnectError <- OSError)."""
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        for _ in range(8):  # a short chain; never loop on a cycle
            cause = cause.__cause__ or cause.__context__
            if cause is None:
                break
            if isinstance(cause, OSError) and type(cause) is not OSError:
                return type(cause).__name__
    return type(exc).__name__


class _StampingConnection(httpcore.AsyncHTTPConnection):
    """A pooled connection that, when a task that waited for the pool hands it its request,
    stamps the end of the wait (the request goes out now)."""

    def __init__(self, stamps: Stamps, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stamps = stamps

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        row = _waiting_row.get()
        if row < 0:
            try:
                return await super().handle_async_request(request)
            except httpcore.ConnectionNotAvailable:
                # offered an idle connection that a request queued before it took first:
                # this one queues now, though it found no queue when it came
                row = _sending_row.get()
                if row >= 0:
                    st = self._stamps
                    if np.isnan(st.store.pool_queued_s[row]):
                        st.store.pool_queued_s[row] = st.now() - st.t0
                    _waiting_row.set(row)
                raise
        _waiting_row.set(-1)
        st = self._stamps
        store = st.store
        t = st.now() - st.t0
        store.pool_acquired_s[row] = t
        store.sent_s[row] = t
        try:
            return await super().handle_async_request(request)
        except httpcore.ConnectionNotAvailable:
            # httpcore offers one idle connection to every queued request; all but one
            # find it taken and queue again: still waiting, not sent
            store.pool_acquired_s[row] = np.nan
            store.sent_s[row] = np.nan
            _waiting_row.set(row)
            raise


class _PoolStampingPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, stamping when a request had to queue for a connection."""

    def __init__(self, stamps: Stamps, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stamps = stamps

    def _assign_requests_to_connections(self) -> list[Any]:
        closing = super()._assign_requests_to_connections()
        row = _pending_row.get()
        if row >= 0:  # the first call in the sending task: its request is the newest
            _pending_row.set(-1)
            requests = self._requests
            if requests and requests[-1].is_queued():
                st = self._stamps
                st.store.pool_queued_s[row] = st.now() - st.t0
                _waiting_row.set(row)
        return closing

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        return _StampingConnection(
            self._stamps,
            origin=origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            http1=self._http1,
            http2=self._http2,
            retries=self._retries,
            local_address=self._local_address,
            uds=self._uds,
            network_backend=self._network_backend,
            socket_options=self._socket_options,
        )


def _http_transport(stamps: Stamps, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport over the given limits; its pool stamps waits when it is capped."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    if limits.max_connections is not None:
        pool = transport._pool  # the pool httpx built: take its settings (and SSL context)
        transport._pool = _PoolStampingPool(
            stamps,
            ssl_context=pool._ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
        )
    return transport


def _request_kwargs(spec: RequestSpec) -> dict[str, Any]:
    """httpx's ``build_request`` arguments (a str body is ``content=``; a form ``data=``)."""
    kw: dict[str, Any] = {}
    if spec.headers:
        kw["headers"] = dict(spec.headers)
    if spec.json is not None:
        kw["json"] = spec.json
    if isinstance(spec.data, str):
        kw["content"] = spec.data.encode()
        kw.setdefault("headers", {}).setdefault(
            "Content-Type", "text/plain; charset=utf-8"
        )  # as aiohttp sends a str body
    elif spec.data is not None:
        kw["data"] = dict(spec.data)
    return kw


class HttpxTransport(Transport):
    """httpx's ``AsyncClient`` over real sockets (``Experiment(client="httpx")``)."""

    name = "httpx"
    #: Stamp ``headers_s`` by a response hook (a request function reads the response).
    stamp_headers = False

    async def open(
        self, stamps: Stamps, *, limit: int, limit_per_host: int, timeout_s: float | None
    ) -> None:
        self.stamps = stamps
        limits = httpx_limits(limit, limit_per_host)
        self._stamp_pool = limits.max_connections is not None  # unlimited never waits
        self._timeout_s = timeout_s
        hooks: dict[str, list[Any]] = {}
        if self.stamp_headers:
            hooks["response"] = [self._stamp_headers]
        self.client = httpx.AsyncClient(
            transport=_http_transport(stamps, limits),
            timeout=httpx.Timeout(None),  # the total is asyncio.timeout's (module docstring)
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
            event_hooks=hooks,
            follow_redirects=False,  # one attempt, one request (httpx's default, kept so)
        )
        self._kwargs = {url: _request_kwargs(spec) for url, spec in self.specs.items()}
        self._auth = {
            url: httpx.BasicAuth(*spec.auth)
            for url, spec in self.specs.items()
            if spec.auth is not None
        }

    async def _stamp_headers(self, response: httpx.Response) -> None:
        row = _headers_row.get()
        if row >= 0:
            st = self.stamps
            st.store.headers_s[row] = st.now() - st.t0

    def bind(self, row: int, request_id: str) -> None:
        """The current task sends ``row`` (for a request function using the client): its
        pool wait and headers time go to that row."""
        _headers_row.set(row)
        if self._stamp_pool:
            _pending_row.set(row)
            _sending_row.set(row)
            _waiting_row.set(-1)

    async def send(self, row: int, method: str, url: str, request_id: str) -> Reply:
        st = self.stamps
        client = self.client
        if self._stamp_pool:
            _pending_row.set(row)
            _sending_row.set(row)
            _waiting_row.set(-1)
        kwargs = self._kwargs.get(url) if self._kwargs else None
        ours = {ID_HEADER: request_id}
        if self.send_costs:
            cost = self.cost_header(row)
            if cost is not None:
                ours[COST_HEADER] = cost
        async with asyncio.timeout(self._timeout_s):
            if kwargs is None:
                request = client.build_request(method, url, headers=ours)
                resp = await client.send(request, stream=True)
            else:
                headers = {**kwargs.get("headers", {}), **ours}
                request = client.build_request(method, url, **{**kwargs, "headers": headers})
                resp = await client.send(request, stream=True, auth=self._auth.get(url))
            try:
                store = st.store
                store.headers_s[row] = st.now() - st.t0
                status = resp.status_code
                headers = resp.headers
                self.header_names.record(store, row, headers)
                retry_after = headers.get("retry-after") if status >= 400 else None
                nbytes = 0  # counted while it streams, never held whole
                async for chunk in resp.aiter_bytes():
                    nbytes += len(chunk)
            finally:
                await resp.aclose()
        return status, retry_after, nbytes, headers

    def error_name(self, exc: BaseException) -> str:
        return error_name(exc)

    async def aclose(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            await client.aclose()

    def state(self) -> dict[str, float]:
        """``in_use``: requests holding a connection of httpcore's pool; ``queued``: the
        requests still waiting for one (its ``_requests``; read only)."""
        client = getattr(self, "client", None)
        pool = getattr(getattr(client, "_transport", None), "_pool", None)
        requests = getattr(pool, "_requests", None)
        if requests is None:
            return {}
        queued = sum(r.is_queued() for r in requests)
        return {"in_use": float(len(requests) - queued), "queued": float(queued)}
