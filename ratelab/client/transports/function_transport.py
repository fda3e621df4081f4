"""Your own request function: ``Experiment(request=fn)``, ``async def fn(ctx) -> response``.

    async def my_aiohttp_request(ctx):
        async with ctx.client.get(ctx.url, headers=ctx.headers) as r:
            await r.read()
            return r

:class:`FunctionTransport` wraps the transport of the Experiment's ``client`` (aiohttp or
httpx): that transport builds the run's session (``ctx.client``, with the strategy's
connection caps) and stamps what happens inside it (pool waits; ``headers_s`` through its
response class / response hook), so a function that sends with ``ctx.client`` is measured
as finely as a built-in request. The engine stamps around the call (``sent_s`` before,
``done_s`` after). A function that uses its own client gets ``headers_s`` NaN.

From the returned object ratelab reads ``status`` (aiohttp) or ``status_code`` (httpx,
requests-like objects), ``headers`` (recorded as :class:`~.base.HeaderNames` says; the
``Retry-After`` of a status >= 400 drives ``Retry``; guards such as ``rl.HeaderPacing`` see
them) and the body size when it is cheaply known (httpx's ``num_bytes_downloaded``, a
read aiohttp body, ``Content-Length``), else 0. An exception is the attempt's ``error``
row, named by the wrapped transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ratelab.client.transports.base import (
    COST_HEADER,
    ID_HEADER,
    Reply,
    Stamps,
    Transport,
    user_agent,
)

__all__ = ["FunctionTransport", "RequestContext", "response_reply"]


@dataclass(slots=True)
class RequestContext:
    """What a request function gets: the attempt, the headers ratelab wants sent (its
    User-Agent, the ``X-Ratelab-Id`` join id and the ``X-Ratelab-Cost`` of a request with a
    ``cost``, plus the Experiment's headers), the
    request's body and auth if the Experiment gives them, and the run's ``client``."""

    url: str
    endpoint: str
    method: str
    request_id: int
    attempt: int
    headers: dict[str, str]
    client: Any
    json: Any = None
    data: Any = None
    auth: tuple[str, str] | None = None
    #: The request's cost in whole tokens (``Experiment(cost=)``; None: no cost); when
    #: given, ``headers`` carries it as ``X-Ratelab-Cost``.
    cost: float | None = None


def _body_size(resp: Any) -> int:
    n = getattr(resp, "num_bytes_downloaded", None)  # httpx
    if isinstance(n, int) and n > 0:
        return n
    body = getattr(resp, "_body", None)  # aiohttp, after read()
    if isinstance(body, bytes | bytearray):
        return len(body)
    headers = getattr(resp, "headers", None)
    if headers is not None:
        try:
            return int(headers.get("Content-Length") or 0)
        except (TypeError, ValueError):
            return 0
    return 0


def response_reply(resp: Any, record: Callable[[Any], None]) -> Reply:
    """(status, Retry-After, bytes, headers) from what a request function returned."""
    status = getattr(resp, "status", None)
    if not isinstance(status, int):
        status = getattr(resp, "status_code", None)
    if not isinstance(status, int) or isinstance(status, bool):
        raise TypeError(
            f"the request function returned {type(resp).__name__}, which has no int "
            "`status` / `status_code`: return the response"
        )
    headers = getattr(resp, "headers", None)
    retry_after = None
    if isinstance(headers, Mapping) or hasattr(headers, "get"):
        record(headers)
        if status >= 400:
            retry_after = headers.get("Retry-After")  # type: ignore[union-attr]
    else:
        headers = None
    return status, retry_after, _body_size(resp), headers


class FunctionTransport(Transport):
    """Sends each attempt by awaiting the user's ``fn(ctx)``; ``inner`` (the client's
    transport) owns the session and the stamping inside it."""

    def __init__(self, fn: Callable[..., Any], inner: Transport) -> None:
        self.fn = fn
        self.inner = inner
        self.name = f"{inner.name}+function"
        inner.stamp_headers = True  # type: ignore[attr-defined]

    async def open(
        self, stamps: Stamps, *, limit: int, limit_per_host: int, timeout_s: float | None
    ) -> None:
        self.stamps = stamps
        self.inner.prepare(specs={}, header_names=self.header_names)
        await self.inner.open(
            stamps, limit=limit, limit_per_host=limit_per_host, timeout_s=timeout_s
        )
        inner: Any = self.inner
        self.client = getattr(inner, "session", None) or inner.client
        self._user_agent = user_agent(inner.name)
        self._timeout_s = timeout_s

    async def send(self, row: int, method: str, url: str, request_id: str) -> Reply:
        store = self.stamps.store
        spec = self.specs.get(url) if self.specs else None
        headers = {"User-Agent": self._user_agent, ID_HEADER: request_id}
        cost = self.cost_header(row) if self.send_costs else None
        if cost is not None:
            headers[COST_HEADER] = cost
        if spec is not None and spec.headers:
            headers.update(spec.headers)
        ctx = RequestContext(
            url=url,
            endpoint=store.endpoints[store.endpoint[row]],
            method=method,
            request_id=int(store.request_id[row]),
            attempt=int(store.attempt[row]),
            headers=headers,
            client=self.client,
            json=None if spec is None else spec.json,
            data=None if spec is None else spec.data,
            auth=None if spec is None else spec.auth,
            cost=None if cost is None else float(cost),
        )
        self.inner.bind(row, request_id)  # type: ignore[attr-defined]
        async with asyncio.timeout(self._timeout_s):  # the whole function: the attempt
            resp = await self.fn(ctx)
        names = self.header_names
        return response_reply(resp, lambda h: names.record(store, row, h))

    def state(self) -> Mapping[str, float]:
        """The client's pool (the inner transport's state)."""
        return self.inner.state()

    def error_name(self, exc: BaseException) -> str:
        return self.inner.error_name(exc)

    async def aclose(self) -> None:
        await self.inner.aclose()
