"""The per-request decision pipeline of a LocalServer, and the one log row per request.

A request passes, in order: the rate limits (over a limit: 429 with ``Retry-After``,
answered at once), the concurrency cap (over it: the overload status, answered at once), the
latency delay, then the fault draw's outcome or the route. Rejected requests get no latency:
a limiter in front of a server answers before the server does any work.

:func:`decide` is the aiohttp middleware that does this; :class:`Policy` holds one server
run's policy state (fresh limiters, the in-flight count, the fault draws, stalled
connections); :class:`ServiceLatency` and :class:`FaultDraws` are the seeded draws.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np
from aiohttp import web

from ratelab.experiment.distributions import Distribution
from ratelab.server.policies import Faults, Limiter, ServerRateLimit, rate_limit_headers
from ratelab.server.state import SHUTDOWN_TIMEOUT_S, STATE

__all__ = [
    "FAULT_ERROR",
    "FAULT_RESET",
    "FAULT_STALL",
    "ID_HEADER",
    "LOG_PATH",
    "NO_FAULT",
    "STATUS_CANCELLED",
    "STATUS_NO_RESPONSE",
    "FaultDraws",
    "Policy",
    "ServiceLatency",
    "decide",
    "parse_id",
]

ID_HEADER = "X-Ratelab-Id"  # "{run}-{request_id}-{attempt}", sent by the ratelab client
#: Where a run asks for its rows of the log (``?run=TOKEN[,TOKEN..]&t0=MONOTONIC``).
LOG_PATH = "/_ratelab/log"
STATUS_CANCELLED = 499  # logged for a request whose handling was cancelled (nginx's code)
STATUS_NO_RESPONSE = 444  # logged for an injected connection reset (nginx's "no response")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NO_ID = ("", -1, 0)


class ServiceLatency:
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


#: What :meth:`FaultDraws.next` returns.
FAULT_ERROR, FAULT_RESET, FAULT_STALL, NO_FAULT = 0, 1, 2, 3


class FaultDraws:
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


class Policy:
    """The server-side policies of one server run (built at start: fresh limiter state)."""

    def __init__(
        self,
        rate_limits: tuple[ServerRateLimit, ...],
        max_concurrency: int | None,
        overload_status: int,
        faults: FaultDraws | None,
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


def parse_id(value: str | None) -> tuple[str, int, int]:
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


async def _stall(request: web.Request, policy: Policy) -> None:
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
async def decide(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Every request passes here, and gets exactly one log row (but the log route itself,
    which is the run asking for the log, not traffic)."""
    if request.path == LOG_PATH:
        return await handler(request)
    arrival = time.monotonic()
    state = request.app[STATE]
    run, request_id, attempt = parse_id(request.headers.get(ID_HEADER))
    status, decision = STATUS_CANCELLED, "ok"  # status stays 499 if we are cancelled
    policy, admitted, limit_headers, fault = state.policy, False, None, NO_FAULT
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
        if fault != NO_FAULT:
            decision = "fault"
            if fault == FAULT_ERROR:
                assert policy is not None and policy.faults is not None
                status = policy.faults.faults.status
                return web.Response(status=status, text="injected fault", headers=limit_headers)
            if fault == FAULT_RESET:
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
