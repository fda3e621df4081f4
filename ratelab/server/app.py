"""The LocalServer's aiohttp app: httpbin-compatible routes behind the decision middleware.

Routes (httpbin-compatible JSON): ``/get``, ``/anything[/...]``, ``/status/{code}``,
``/delay/{seconds}``, ``/bytes/{n}``, ``/uuid``, ``/headers``. Every request first passes
:func:`ratelab.server.decide.decide` (policies, latency, faults, the log row).

``/bytes/{n}`` sends at most ``MAX_BYTES`` (10 MiB; a larger ``n`` gets 10 MiB) of seeded
random bytes, drawn and sent ``CHUNK_BYTES`` (64 KiB) at a time above that size, so a request
for a large body never makes the server hold it whole. ``/delay/{s}`` sleeps at most
``MAX_DELAY_S`` (60 s).

Beside them, ``GET /_ratelab/log?run=TOKEN[,TOKEN..]&t0=T`` answers a run's question "what
did the server see of me?" with those rows of the request log as Parquet (this route is not
logged and no policy applies to it).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import numpy as np
from aiohttp import web
from multidict import MultiMapping

from ratelab.server.decide import LOG_PATH, decide
from ratelab.server.state import STATE, ServerState

__all__ = ["LOG_CONTENT_TYPE", "MAX_BYTES", "MAX_DELAY_S", "make_app"]

#: The media type of the log route's answer.
LOG_CONTENT_TYPE = "application/vnd.apache.parquet"

MAX_DELAY_S = 60.0  # /delay/{s} sleeps at most this long
MAX_BYTES = 10 * 1024 * 1024  # /bytes/{n} sends at most this many bytes (10 MiB)
CHUNK_BYTES = 64 * 1024  # /bytes/{n} beyond this is drawn and sent a chunk at a time


def _multi(values: MultiMapping[Any], keys: Iterable[str] | None = None) -> dict[str, Any]:
    """httpbin's form of a multidict: one value -> the value, repeated -> a list."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(values.keys() if keys is None else keys):
        all_values = values.getall(key)
        out[key] = all_values[0] if len(all_values) == 1 else all_values
    return out


def _headers(request: web.Request) -> dict[str, str]:
    """Request headers in httpbin's title-case form (``X-Ratelab-Id``); repeats joined by ','."""
    out: dict[str, str] = {}
    for key, value in request.headers.items():
        title = "-".join(part.capitalize() for part in key.split("-"))
        out[title] = f"{out[title]},{value}" if title in out else value
    return out


def _echo(request: web.Request) -> dict[str, Any]:
    return {
        "args": _multi(request.query),
        "headers": _headers(request),
        "origin": request.remote or "",
        "url": str(request.url),
    }


def _text(body: bytes) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError:
        return "data:application/octet-stream;base64," + base64.b64encode(body).decode()


def _bad(what: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"invalid {what}")


async def _get(request: web.Request) -> web.Response:
    return web.json_response(_echo(request))


async def _anything(request: web.Request) -> web.Response:
    data, form, files, parsed = "", {}, {}, None
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        post = await request.post()
        fields = [k for k, v in post.items() if not isinstance(v, web.FileField)]
        form = _multi(post, fields)
        files = {k: _text(v.file.read()) for k, v in post.items() if isinstance(v, web.FileField)}
    else:
        body = await request.read()
        data = _text(body)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
    return web.json_response(
        {**_echo(request), "data": data, "files": files, "form": form, "json": parsed,
         "method": request.method}
    )  # fmt: skip


async def _status(request: web.Request) -> web.Response:
    try:
        code = int(request.match_info["code"])
    except ValueError:
        raise _bad("status code") from None
    if not 200 <= code <= 599:
        raise _bad("status code")
    return web.Response(status=code)


async def _delay(request: web.Request) -> web.Response:
    try:
        seconds = float(request.match_info["seconds"])
    except ValueError:
        raise _bad("delay") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise _bad("delay")
    await asyncio.sleep(min(seconds, MAX_DELAY_S))
    return web.json_response(_echo(request))


async def _bytes(request: web.Request) -> web.Response:
    try:
        n = int(request.match_info["n"])
    except ValueError:
        raise _bad("byte count") from None
    if n < 0:
        raise _bad("byte count")
    n = min(n, MAX_BYTES)
    rng = request.app[STATE].data_rng
    if n <= CHUNK_BYTES:
        return web.Response(body=rng.bytes(n), content_type="application/octet-stream")
    # a generator of its own (drawn from the server's), so concurrent streams stay seeded
    return web.Response(
        body=_chunks(rng.spawn(1)[0], n),
        content_type="application/octet-stream",
        headers={"Content-Length": str(n)},
    )


async def _chunks(rng: np.random.Generator, n: int) -> AsyncIterator[bytes]:
    """``n`` seeded bytes, CHUNK_BYTES at a time: the body is never built whole."""
    while n > 0:
        size = min(n, CHUNK_BYTES)
        yield rng.bytes(size)
        n -= size


async def _uuid(request: web.Request) -> web.Response:
    value = uuid.UUID(bytes=request.app[STATE].data_rng.bytes(16), version=4)
    return web.json_response({"uuid": str(value)})


async def _headers_route(request: web.Request) -> web.Response:
    return web.json_response({"headers": _headers(request)})


async def _log(request: web.Request) -> web.Response:
    """The log rows of the runs asked for, as Parquet (exact dtypes), times relative to
    ``t0``: how a run finds the server's view of it, from any process on this machine."""
    runs = [r for r in request.query.get("run", "").split(",") if r]
    try:
        t0 = float(request.query.get("t0", "0"))
    except ValueError:
        raise _bad("t0 must be a number (a time.monotonic() reading)") from None
    frame = request.app[STATE].log.frame(t0=t0, run=runs)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return web.Response(body=buf.getvalue(), content_type=LOG_CONTENT_TYPE)


def make_app(state: ServerState) -> web.Application:
    """The app of one server run: the middleware, the routes, and ``state`` under STATE."""
    app = web.Application(middlewares=[decide])
    app[STATE] = state
    app.router.add_get("/get", _get)
    app.router.add_route("*", "/anything", _anything)
    app.router.add_route("*", "/anything/{tail:.*}", _anything)
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_route("*", "/delay/{seconds}", _delay)
    app.router.add_get("/bytes/{n}", _bytes)
    app.router.add_get("/uuid", _uuid)
    app.router.add_get("/headers", _headers_route)
    app.router.add_get(LOG_PATH, _log)
    return app
