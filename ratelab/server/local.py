"""The local target server: an httpbin-compatible aiohttp app that logs every request it sees.

``LocalServer`` runs aiohttp on its own daemon thread with its own event loop, so a client on
any loop (a Jupyter kernel's, ``asyncio.run``'s) or a synchronous client can use it without
deadlocking. Each request can be given a service delay drawn from a seeded latency model, and
gets one row in :meth:`LocalServer.log`, with arrival and departure on the ``time.monotonic()``
clock, so the server's view lines up with the client's records.

    with rl.LocalServer(latency=rl.Uniform(0.05, 0.2)) as server:
        ...  # send requests to server.url, e.g. f"{server.url}/get"
        server.log()

The server can also say no, as real APIs do (see :mod:`ratelab.server.policies`); each request's
``decision`` in the log says which policy answered it:

    rl.LocalServer(rate_limit=rl.ServerRateLimit(20, 1.0, algorithm="gcra"),  # 429 "rate_limited"
                   max_concurrency=8,                          # 503 "overloaded"
                   faults=rl.Faults(error_rate=0.05, seed=1))  # 500 / reset / stall "fault"

A request passes, in order: the rate limits (over a limit: 429 with ``Retry-After``,
answered at once), the concurrency cap (over it: ``overload_status``, answered at once), the
latency delay, then the fault draw's outcome or the route. Rejected requests get no latency:
a limiter in front of a server answers before the server does any work.

Routes (httpbin-compatible JSON): ``/get``, ``/anything[/...]``, ``/status/{code}``,
``/delay/{seconds}``, ``/bytes/{n}``, ``/uuid``, ``/headers``.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import json
import math
import numbers
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Self

import numpy as np
import pandas as pd
from aiohttp import web
from multidict import MultiMapping

from ratelab._validate import integer
from ratelab.errors import ConfigError
from ratelab.experiment.distributions import Distribution, as_distribution
from ratelab.server.policies import (
    Faults,
    Limiter,
    ServerRateLimit,
    as_faults,
    as_rate_limits,
    rate_limit_headers,
)

__all__ = ["DECISIONS", "LocalServer", "serve"]

ID_HEADER = "X-Ratelab-Id"  # "{run}-{request_id}-{attempt}", sent by the ratelab client
MAX_DELAY_S = 60.0  # /delay/{s} sleeps at most this long
MAX_BYTES = 100 * 1024 * 1024  # /bytes/{n} sends at most this many bytes
STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 1.0  # on stop(), in-flight requests get this long, then are cancelled
STATUS_CANCELLED = 499  # logged for a request whose handling was cancelled (nginx's code)
STATUS_NO_RESPONSE = 444  # logged for an injected connection reset (nginx's "no response")
OVERLOAD_STATUS = 503
DECISIONS = ("ok", "rate_limited", "overloaded", "fault")  # the log's `decision` values
LOG_COLUMNS = ("run", "request_id", "attempt", "method", "path",
               "arrival_s", "departure_s", "status", "decision")  # fmt: skip

_Row = tuple[str, int, int, str, str, float, float, int, str]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NO_ID = ("", -1, 0)


class _Log:
    """Rows appended by the server thread (one tuple per request), read by any thread."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rows: list[_Row] = []

    def append(self, row: _Row) -> None:
        with self.cond:
            self.rows.append(row)
            self.cond.notify_all()

    def snapshot(self) -> list[_Row]:
        with self.cond:
            return list(self.rows)

    def clear(self) -> None:
        with self.cond:
            self.rows.clear()

    def wait_for(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` rows exist; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.rows) >= n, timeout)


class _Latency:
    """Service delays drawn from ``dist`` in batches (one numpy call per 256 requests)."""

    def __init__(self, dist: Distribution, rng: np.random.Generator) -> None:
        self.dist, self.rng = dist, rng
        self.buf: np.ndarray = np.empty(0)
        self.i = 0

    def next(self) -> float:
        if self.i >= len(self.buf):
            self.buf, self.i = self.dist.sample(self.rng, 256), 0
        self.i += 1
        return float(self.buf[self.i - 1])


_FAULT_ERROR, _FAULT_RESET, _FAULT_STALL, _NO_FAULT = 0, 1, 2, 3


class _FaultDraws:
    """One seeded uniform draw per request (in batches of 256) -> which fault, if any."""

    def __init__(self, faults: Faults, rng: np.random.Generator) -> None:
        self.faults, self.rng = faults, rng
        e, r, s = faults.error_rate, faults.reset_rate, faults.stall_rate
        self.edges = np.array([e, e + r, e + r + s])
        self.buf: list[int] = []
        self.i = 0

    def next(self) -> int:
        if self.i >= len(self.buf):
            u = self.rng.random(256)
            self.buf, self.i = np.searchsorted(self.edges, u, side="right").tolist(), 0
        self.i += 1
        return self.buf[self.i - 1]


class _Policy:
    """The server-side policies of one server run (built at start: fresh limiter state)."""

    def __init__(
        self,
        rate_limits: tuple[ServerRateLimit, ...],
        max_concurrency: int | None,
        overload_status: int,
        faults: _FaultDraws | None,
    ) -> None:
        self.limits: list[tuple[ServerRateLimit, Limiter]] = [(r, r.build()) for r in rate_limits]
        self.max_concurrency, self.overload_status = max_concurrency, overload_status
        self.faults = faults
        self.in_flight = 0
        self.stalled: set[asyncio.BaseTransport] = set()  # aborted on stop: stop stays quick
        self.closing = False  # set on stop: a stall from now on hangs up at once

    def rate_limit(self, path: str, now: float) -> tuple[bool, dict[str, str]] | None:
        """(allowed, the RateLimit-* headers; with ``Retry-After`` if not allowed), or None if
        no limit applies to ``path``. A request must pass every limit that applies to it, and
        is counted by all of them only if it does."""
        applies = [(spec, lim) for spec, lim in self.limits if spec.applies_to(path)]
        if not applies:
            return None
        if len(applies) == 1:
            spec, lim = applies[0]
            decision = lim.decide(now)
            return decision.allowed, rate_limit_headers(spec.limit, decision)
        peeks = [(lim.peek(now), spec) for spec, lim in applies]
        denied = [p for p in peeks if not p[0].allowed]
        if denied:  # report the limit that keeps the client waiting longest
            decision, spec = max(denied, key=lambda p: p[0].retry_after_s)
        else:  # count it everywhere; report the limit closest to running out
            decided = [(lim.decide(now), spec) for spec, lim in applies]
            decision, spec = min(decided, key=lambda p: (p[0].remaining, -p[0].reset_s))
        return decision.allowed, rate_limit_headers(spec.limit, decision)


class _State:
    """Everything the server thread uses. It never references the LocalServer, so a
    LocalServer that is garbage-collected can be finalized, which stops this thread."""

    def __init__(
        self,
        host: str,
        port: int,
        name: str | None,
        latency: _Latency | None,
        data_rng: np.random.Generator,
        log: _Log,
        policy: _Policy | None = None,
    ) -> None:
        self.host, self.port, self.name = host, port, name
        self.latency, self.data_rng, self.log = latency, data_rng, log
        self.policy = policy
        self.loop = asyncio.new_event_loop()
        self.thread: threading.Thread | None = None
        self.stopped = False
        self.stop_lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return not self.stopped and self.thread is not None and self.thread.is_alive()


_STATE = web.AppKey("ratelab_state", _State)
_running: set[_State] = set()  # every started, not yet stopped server (see stop_all)
_running_lock = threading.Lock()
_by_url: weakref.WeakValueDictionary[str, LocalServer] = weakref.WeakValueDictionary()


# --- the middleware: every request passes here, and gets exactly one log row -----------------


def _parse_id(value: str | None) -> tuple[str, int, int]:
    """``"{run}-{request_id}-{attempt}"`` -> (run, request_id, attempt); invalid -> no id."""
    if not value:
        return _NO_ID
    parts = value.rsplit("-", 2)
    if len(parts) != 3:
        return _NO_ID
    try:
        request_id, attempt = int(parts[1]), int(parts[2])
    except ValueError:
        return _NO_ID
    if not (0 <= request_id < 2**63 and 0 <= attempt < 2**15):
        return _NO_ID
    return parts[0], request_id, attempt


async def _drop_connection(request: web.Request) -> None:
    """Close the connection without a response. Closing it cancels this handler
    (``handler_cancellation``), as a client that hangs up does; this waits for that."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    await asyncio.sleep(SHUTDOWN_TIMEOUT_S)  # cancelled long before this ends
    raise ConnectionResetError("injected connection reset")  # pragma: no cover


async def _stall(request: web.Request, policy: _Policy) -> None:
    """Never answer: wait until the client hangs up or the server stops (both cancel us)."""
    transport = request.transport
    if transport is not None:
        policy.stalled.add(transport)
        if policy.closing:
            transport.abort()
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        policy.stalled.discard(transport)


@web.middleware
async def _handle(request: web.Request, handler: _Handler) -> web.StreamResponse:
    arrival = time.monotonic()
    state = request.app[_STATE]
    run, request_id, attempt = _parse_id(request.headers.get(ID_HEADER))
    status, decision = STATUS_CANCELLED, "ok"  # status stays 499 if we are cancelled
    policy, admitted, limit_headers, fault = state.policy, False, None, _NO_FAULT
    logged = False
    try:
        if policy is not None:  # rejections are answered at once, without the latency
            if policy.limits and (verdict := policy.rate_limit(request.path, arrival)):
                allowed, limit_headers = verdict
                if not allowed:
                    status, decision = 429, "rate_limited"
                    return web.Response(status=429, text="rate limited", headers=limit_headers)
            if policy.max_concurrency is not None:
                if policy.in_flight >= policy.max_concurrency:
                    status, decision = policy.overload_status, "overloaded"
                    return web.Response(status=status, text="overloaded", headers=limit_headers)
                policy.in_flight += 1
                admitted = True
            if policy.faults is not None:
                fault = policy.faults.next()
        if state.latency is not None:
            await asyncio.sleep(state.latency.next())
        if fault != _NO_FAULT:
            decision = "fault"
            if fault == _FAULT_ERROR:
                assert policy is not None and policy.faults is not None
                status = policy.faults.faults.status
                return web.Response(status=status, text="injected fault", headers=limit_headers)
            if fault == _FAULT_RESET:
                status = STATUS_NO_RESPONSE
                # log before the hang-up: the client may read the log as soon as it sees it
                state.log.append((run, request_id, attempt, request.method, request.path,
                                  arrival, time.monotonic(), status, decision))  # fmt: skip
                logged = True
                await _drop_connection(request)
            assert policy is not None
            await _stall(request, policy)  # ends only by cancellation: logged as 499
        response = await handler(request)
        status = response.status
        if limit_headers is not None and not response.prepared:
            response.headers.update(limit_headers)
        return response
    except web.HTTPException as exc:  # 400, 404, 405 ... raised by routes or the router
        status = exc.status
        if limit_headers is not None:
            exc.headers.update(limit_headers)
        raise
    except Exception:
        status = 500
        raise
    finally:
        if admitted:
            policy.in_flight -= 1  # type: ignore[union-attr]
        if not logged:
            state.log.append((run, request_id, attempt, request.method, request.path,
                              arrival, time.monotonic(), status, decision))  # fmt: skip


# --- routes ------------------------------------------------------------------------------------


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
    body = request.app[_STATE].data_rng.bytes(min(n, MAX_BYTES))
    return web.Response(body=body, content_type="application/octet-stream")


async def _uuid(request: web.Request) -> web.Response:
    value = uuid.UUID(bytes=request.app[_STATE].data_rng.bytes(16), version=4)
    return web.json_response({"uuid": str(value)})


async def _headers_route(request: web.Request) -> web.Response:
    return web.json_response({"headers": _headers(request)})


def _make_app(state: _State) -> web.Application:
    app = web.Application(middlewares=[_handle])
    app[_STATE] = state
    app.router.add_get("/get", _get)
    app.router.add_route("*", "/anything", _anything)
    app.router.add_route("*", "/anything/{tail:.*}", _anything)
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_route("*", "/delay/{seconds}", _delay)
    app.router.add_get("/bytes/{n}", _bytes)
    app.router.add_get("/uuid", _uuid)
    app.router.add_get("/headers", _headers_route)
    return app


# --- the server thread -------------------------------------------------------------------------


async def _hang_up_stalls(runner: web.AppRunner, policy: _Policy) -> None:
    """Stop listening, then drop every stalled connection. A stall never ends by itself, so
    it would otherwise hold stop() for the whole shutdown grace period."""
    for site in list(runner.sites):
        await site.stop()
    policy.closing = True
    for transport in list(policy.stalled):
        transport.abort()  # type: ignore[attr-defined]


def _thread_main(state: _State, ready: concurrent.futures.Future[int]) -> None:
    """Bind, report the port through ``ready``, serve until the loop is stopped, clean up."""
    loop = state.loop
    asyncio.set_event_loop(loop)
    # handler_cancellation: a client that disconnects cancels its handler (logged as 499)
    runner = web.AppRunner(
        _make_app(state),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    try:
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, state.host, state.port).start())
            ready.set_result(runner.addresses[0][1])
        except BaseException as exc:
            ready.set_exception(exc)
        else:
            loop.run_forever()
        if state.policy is not None:
            loop.run_until_complete(_hang_up_stalls(runner, state.policy))
        loop.run_until_complete(runner.cleanup())
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def _stop_state(state: _State) -> None:
    """Stop a server thread and wait for it; safe to call any number of times."""
    with state.stop_lock:
        if state.stopped:
            return
        state.stopped = True
    with _running_lock:
        _running.discard(state)
    try:
        state.loop.call_soon_threadsafe(state.loop.stop)
    except RuntimeError:  # the loop is already closed: the thread has ended
        pass
    if state.thread is not None and state.thread is not threading.current_thread():
        state.thread.join(STARTUP_TIMEOUT_S)


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(name, value, "must be a finite number (a time.monotonic() reading)")
    return float(value)


class LocalServer:
    """An httpbin-compatible HTTP server on its own thread and event loop, logging every request.

    ``latency`` (a distribution, a number of seconds, ``"uniform:0.05,0.2"`` or None) is a
    service delay added to every request before it is answered, drawn from a generator seeded
    with ``seed``. A ``name`` makes re-running a notebook cell safe: starting a server stops a
    running one with the same name. ``LocalServer.stop_all()`` stops every running server.

    Server-side policies (each None by default; see :mod:`ratelab.server.policies`):

    ``rate_limit``
        A :class:`~ratelab.server.policies.ServerRateLimit`, a string such as ``"20/1s:gcra"``, a
        mapping of ServerRateLimit's arguments, or a list of them (e.g. a global limit plus
        per-route ones; a request must pass all). Over a limit: 429 at once, with
        ``Retry-After`` (whole seconds, at least 1), ``X-Retry-After-Ms`` and
        ``RateLimit-Limit/-Remaining/-Reset``; allowed responses carry the ``RateLimit-*``
        headers too. Logged as ``"rate_limited"``. Limiter state starts fresh at every
        :meth:`start`.
    ``max_concurrency``
        At most this many requests in the server at once (counted from admission, through
        the latency delay, to the answer); one more is answered ``overload_status`` (503)
        at once, logged as ``"overloaded"``.
    ``faults``
        :class:`~ratelab.server.policies.Faults` (or a mapping of its fields): seeded injected
        errors (``status``), connection resets (logged with status 444) and stalls (never
        answered; logged 499 when the client hangs up or the server stops), all logged as
        ``"fault"``. The fault stream is its own: a seed's latencies and payloads do not
        change when faults are added.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: object = None,
        seed: int | None = None,
        name: str | None = None,
        rate_limit: object = None,
        max_concurrency: int | None = None,
        overload_status: int = OVERLOAD_STATUS,
        faults: object = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ConfigError("host", host, "must be a non-empty string such as '127.0.0.1'")
        if (
            isinstance(port, bool)
            or not isinstance(port, numbers.Integral)
            or not 0 <= port < 2**16
        ):
            raise ConfigError("port", port, "must be an integer in 0..65535 (0: any free port)")
        if seed is not None:
            seed = integer("seed", seed, minimum=0)
        if name is not None and not isinstance(name, str):
            raise ConfigError("name", name, "must be a string or None")
        self.host, self.name, self.seed = host, name, seed
        self.latency: Distribution | None = as_distribution("latency", latency)
        self.rate_limit: tuple[ServerRateLimit, ...] = as_rate_limits(rate_limit)
        if max_concurrency is not None:
            max_concurrency = integer("max_concurrency", max_concurrency, minimum=1)
        self.max_concurrency: int | None = max_concurrency
        if (
            isinstance(overload_status, bool)
            or not isinstance(overload_status, numbers.Integral)
            or not 400 <= overload_status <= 599
        ):
            raise ConfigError("overload_status", overload_status, "must be an integer in 400..599")
        self.overload_status = int(overload_status)
        faults = as_faults(faults)
        self.faults: Faults | None = faults
        # spawn(3): the first two children are what spawn(2) gave, so latency and data
        # streams of a seed are unchanged by the fault stream
        latency_rng, self._data_rng, fault_rng = np.random.default_rng(seed).spawn(3)
        self._latency = None if self.latency is None else _Latency(self.latency, latency_rng)
        self._faults: _FaultDraws | None = None
        if faults is not None and faults.active:
            if faults.seed is not None:
                fault_rng = np.random.default_rng(faults.seed)
            self._faults = _FaultDraws(faults, fault_rng)
        self._port = int(port)
        self._log = _Log()
        self._state: _State | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def running(self) -> bool:
        return self._state is not None and self._state.alive

    @property
    def port(self) -> int:
        """The bound port once started (0 before, if the port was left to the OS)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``; needs the port, so start first when ``port=0``."""
        if self._port == 0:
            raise RuntimeError("LocalServer has no port yet: call start() or use `with` first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    def start(self) -> Self:
        """Start serving (no-op if running); returns once the socket is bound."""
        if self.running:
            return self
        self.stop()  # release a previous run's finalizer (its thread is already stopped)
        if self.name is not None:
            with _running_lock:
                same_name = [s for s in _running if s.name == self.name]
            for old in same_name:
                _stop_state(old)
        policy = None
        if self.rate_limit or self.max_concurrency is not None or self._faults is not None:
            policy = _Policy(
                self.rate_limit, self.max_concurrency, self.overload_status, self._faults
            )
        state = _State(
            self.host, self._port, self.name, self._latency, self._data_rng, self._log, policy
        )
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        state.thread = threading.Thread(
            target=_thread_main,
            args=(state, ready),
            daemon=True,
            name=f"ratelab-server-{self.name or self._port}",
        )
        state.thread.start()
        where = f"{self.host}:{self._port}"
        try:
            port = ready.result(timeout=STARTUP_TIMEOUT_S)
        except TimeoutError as exc:
            _stop_state(state)
            raise TimeoutError(f"LocalServer did not start on {where} in time") from exc
        except BaseException as exc:
            state.stopped = True  # the thread cleans up and ends by itself
            state.thread.join()
            if isinstance(exc, OSError):
                raise OSError(
                    exc.errno, f"LocalServer cannot listen on {where}: {exc.strerror or exc}"
                ) from exc
            raise
        self._port, self._state = port, state
        _by_url[self.url] = self
        with _running_lock:
            _running.add(state)
        self._finalizer = weakref.finalize(self, _stop_state, state)
        return self

    def stop(self) -> None:
        """Stop serving: close the socket, stop and close the loop, join the thread. Idempotent."""
        if self._finalizer is not None:
            self._finalizer()  # calls _stop_state(state) once

    @classmethod
    def find(cls, url: str) -> LocalServer | None:
        """The running LocalServer serving ``url`` (its base URL), if any: lets a run whose
        target is ``server.url`` still attach the server's log to its Result."""
        server = _by_url.get(url.rstrip("/"))
        return server if server is not None and server.running else None

    @classmethod
    def stop_all(cls) -> None:
        """Stop every running LocalServer (e.g. before re-running a notebook)."""
        with _running_lock:
            states = list(_running)
        for state in states:
            _stop_state(state)

    def log(self, *, t0: float | None = None, run: str | None = None) -> pd.DataFrame:
        """One row per request seen (a snapshot). With ``t0`` (a ``time.monotonic()``
        reading) times are relative to it; with ``run``, only that run's rows."""
        shift = 0.0 if t0 is None else _check_real("t0", t0)
        rows = self._log.snapshot()
        if run is not None:
            if not isinstance(run, str):
                raise ConfigError("run", run, "must be a run token (str) or None")
            rows = [r for r in rows if r[0] == run]
        cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 9
        return pd.DataFrame(
            {
                "run": pd.Categorical(cols[0]),
                "request_id": np.array(cols[1], dtype=np.int64),
                "attempt": np.array(cols[2], dtype=np.int16),
                "method": pd.Categorical(cols[3]),
                "path": pd.Categorical(cols[4]),
                "arrival_s": np.array(cols[5], dtype=np.float64) - shift,
                "departure_s": np.array(cols[6], dtype=np.float64) - shift,
                "status": np.array(cols[7], dtype=np.int16),
                "decision": pd.Categorical(cols[8]),
            },
            columns=list(LOG_COLUMNS),
        )

    def clear_log(self) -> None:
        """Forget every logged request."""
        self._log.clear()

    def _wait_for_rows(self, n: int, timeout: float = 5.0) -> bool:
        """Block until the log has ``n`` rows (for rows logged after the client gave up)."""
        return self._log.wait_for(n, timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _policy_repr(self) -> str:
        """``, rate_limit=..., max_concurrency=..., faults=...`` for the policies that are set."""
        out = ""
        if self.rate_limit:
            limits = self.rate_limit[0] if len(self.rate_limit) == 1 else list(self.rate_limit)
            out += f", rate_limit={limits!r}"
        if self.max_concurrency is not None:
            out += f", max_concurrency={self.max_concurrency}"
            if self.overload_status != OVERLOAD_STATUS:
                out += f", overload_status={self.overload_status}"
        if self.faults is not None:
            out += f", faults={self.faults!r}"
        return out

    def __repr__(self) -> str:
        where = f"url={self.url!r}" if self._port else f"host={self.host!r}, port=0"
        name = f", name={self.name!r}" if self.name is not None else ""
        return f"LocalServer({where}, latency={self.latency!r}{self._policy_repr()}{name})"


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    latency: object = None,
    seed: int | None = None,
    rate_limit: object = None,
    max_concurrency: int | None = None,
) -> None:
    """Run a LocalServer in the foreground until Ctrl-C (``ratelab serve``).

    ``rate_limit`` takes the command-line form ``"20/1s"`` or ``"20/1s:sliding_window"``
    (or a list of them, or ServerRateLimit objects); ``max_concurrency`` an integer."""
    server = LocalServer(
        host=host,
        port=port,
        latency=latency,
        seed=seed,
        rate_limit=rate_limit,
        max_concurrency=max_concurrency,
    )
    with server:
        info = f"ratelab server on {server.url} (latency={server.latency!r}"
        info += f"{server._policy_repr()}); Ctrl-C to stop"
        try:  # print inside the try: Ctrl-C may come as soon as the URL is out
            print(info, flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    print(f"stopped after {len(server.log())} requests", flush=True)


atexit.register(LocalServer.stop_all)
