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
import math
import time
from collections.abc import Awaitable, Callable

import numpy as np
from aiohttp import web

from ratelab.experiment.distributions import Distribution
from ratelab.protocol.header_styles import format_headers, problem_body
from ratelab.protocol.quota import COST_HEADER, Quota
from ratelab.protocol.wall_clock import epoch_s
from ratelab.server.policies import ConcurrencyLimiter, Decision, Faults, Limiter, ServerRateLimit
from ratelab.server.state import SHUTDOWN_TIMEOUT_S, STATE

__all__ = [
    "FAULT_ERROR",
    "FAULT_RESET",
    "FAULT_STALL",
    "ID_HEADER",
    "LOG_PATH",
    "NO_FAULT",
    "STATUS_BAD_REQUEST",
    "STATUS_CANCELLED",
    "STATUS_NO_RESPONSE",
    "Admission",
    "FaultDraws",
    "Policy",
    "ServiceLatency",
    "cost_error",
    "decide",
    "parse_cost",
    "parse_id",
]

ID_HEADER = "X-Ratelab-Id"  # "{run}-{request_id}-{attempt}", sent by the ratelab client
#: Where a run asks for its rows of the log (``?run=TOKEN[,TOKEN..]&t0=MONOTONIC``).
LOG_PATH = "/_ratelab/log"
STATUS_CANCELLED = 499  # logged for a request whose handling was cancelled (nginx's code)
STATUS_BAD_REQUEST = 400  # a request whose X-Ratelab-Cost cannot be read
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


class Admission:
    """What the rate limits said about one request: ``allowed``; the response ``headers``
    (in the server's header style; ``Retry-After`` on a refusal); the refusal's ``body``
    (content type, text) or None; ``charges`` (limit, limiter, amount, time) to refund or
    release at the end; the request's declared ``cost`` and the fraction ``actual`` of it
    its response will use."""

    __slots__ = ("actual", "allowed", "body", "charges", "cost", "headers", "pending")

    def __init__(
        self, allowed: bool, headers: dict[str, str], body: tuple[str, str] | None,
        charges: list[tuple[ServerRateLimit, Limiter | ConcurrencyLimiter, float, float]],
        cost: int,
    ) -> None:  # fmt: skip
        self.allowed, self.headers, self.body = allowed, headers, body
        self.charges, self.cost = charges, cost
        self.actual = 1.0
        #: whether :meth:`Policy.finish` has anything to do (a slot, or a refund)
        self.pending = any(spec.unit == "concurrent" for spec, _, _, _ in charges)

    def cost_actual(self) -> int:
        """The units the response used (0 if refused: a refusal is charged nothing)."""
        return round(self.cost * self.actual) if self.allowed else 0


def parse_cost(value: str | None) -> int | None:
    """The ``X-Ratelab-Cost`` request header -> the request's cost: a whole number of tokens
    (1 without the header, so a tokens quota counts requests that say nothing); None if
    it is not a non-negative decimal integer."""
    if value is None:
        return 1
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 15:
        return None
    return int(value)


def cost_error(value: str | None) -> str:
    """The body of the 400 answering an unreadable ``X-Ratelab-Cost``."""
    return (
        f"invalid {COST_HEADER} header {value!r}: must be a non-negative whole number of"
        " tokens, such as '500'"
    )


def _quota(name: str, spec: ServerRateLimit, d: Decision, remaining: int) -> Quota:
    if spec.unit == "concurrent":
        return Quota(name, spec.limit, remaining, None, None, "concurrent")
    return Quota(name, spec.limit, remaining, d.reset_s, spec.window_s, spec.unit)


def _names(rate_limits: tuple[ServerRateLimit, ...]) -> list[str]:
    """Each limit's name in the headers: its own, else its unit; repeats numbered."""
    out: list[str] = []
    for spec in rate_limits:
        base = spec.name or spec.unit
        name, i = base, 2
        while name in out:
            name, i = f"{base}-{i}", i + 1
        out.append(name)
    return out


class Policy:
    """The server-side policies of one server run (built at start: fresh limiter state).

    ``headers``: the header style of its responses (see
    :mod:`ratelab.protocol.header_styles`); ``actual``: draws of the fraction of a
    request's declared cost its response uses (None: all of it), refunded to the tokens
    quotas when the response ends."""

    def __init__(
        self,
        rate_limits: tuple[ServerRateLimit, ...],
        max_concurrency: int | None,
        overload_status: int,
        faults: FaultDraws | None,
        *,
        headers: str | None = "ietf",
        actual: ServiceLatency | None = None,
        primary_retry_after: bool = True,
    ) -> None:
        self.limits: list[tuple[ServerRateLimit, Limiter | ConcurrencyLimiter, str]] = [
            (r, r.build(), n) for r, n in zip(rate_limits, _names(rate_limits), strict=True)
        ]
        self.max_concurrency, self.overload_status = max_concurrency, overload_status
        self.faults = faults
        self.style = headers
        self.actual = actual
        self.primary_retry_after = primary_retry_after
        self.in_flight = 0
        self.stalled: set[asyncio.BaseTransport] = set()  # aborted on stop: stop stays quick
        self.closing = False  # set on stop: a stall from now on hangs up at once

    def admit(self, path: str, now: float, cost: int, now_epoch_s: float) -> Admission | None:
        """The rate limits' verdict on a request for ``path`` costing ``cost`` at ``now``, or
        None if no limit applies to ``path``. Atomic: the request is admitted only if every
        limit that applies has room for it (each ``"tokens"`` limit for ``cost``, the others
        for 1), and only then charged to all of them; a refused request is charged nothing."""
        if len(self.limits) == 1:  # the common case, without the lists
            spec, lim, name = self.limits[0]
            if not spec.applies_to(path):
                return None
            amount = float(cost) if spec.unit == "tokens" else 1.0
            d = lim.decide(now, amount)
            if d.allowed:
                quota = _quota(name, spec, d, d.remaining)
                headers = format_headers(self.style, (quota,), now_epoch_s=now_epoch_s)
                return self._admitted(headers, [(spec, lim, amount, now)], cost)
        applies = [(spec, lim, name) for spec, lim, name in self.limits if spec.applies_to(path)]
        if not applies:
            return None
        amounts = [float(cost) if spec.unit == "tokens" else 1.0 for spec, _, _ in applies]
        pairs = list(zip(applies, amounts, strict=True))
        if len(self.limits) == 1:  # refused above: deciding was the check, nothing charged
            decisions = [d]
        elif len(applies) == 1:  # one limit: deciding is the check (a refusal charges nothing)
            decisions = [applies[0][1].decide(now, amounts[0])]
        else:
            decisions = [lim.peek(now, a) for (_, lim, _), a in pairs]
            if all(d.allowed for d in decisions):  # room everywhere: charge everywhere
                decisions = [lim.decide(now, a) for (_, lim, _), a in pairs]
        if all(d.allowed for d in decisions):
            quotas = [_quota(name, spec, d, d.remaining)
                      for (spec, _, name), d in zip(applies, decisions, strict=True)]  # fmt: skip
            headers = format_headers(self.style, quotas, now_epoch_s=now_epoch_s)
            return self._admitted(
                headers, [(spec, lim, a, now) for (spec, lim, _), a in pairs], cost
            )
        quotas, violated, retry = [], [], 0.0
        for ((spec, _, name), a), d in zip(pairs, decisions, strict=True):
            # nothing was charged: what a quota that had room reports is before this request
            left = d.remaining + int(a) if d.allowed else d.remaining
            quotas.append(_quota(name, spec, d, left))
            if not d.allowed:
                violated.append(name)
                retry = max(retry, d.retry_after_s)
        retry_after = retry if math.isfinite(retry) else None  # too large ever to pass
        if not self.primary_retry_after and applies[0][0] is self.limits[0][0]:
            if not decisions[0].allowed:
                retry_after = None  # GitHub: the primary limit says x-ratelimit-reset only
        headers = format_headers(
            self.style, quotas, now_epoch_s=now_epoch_s, retry_after_s=retry_after
        )
        return Admission(False, headers, problem_body(self.style, violated), [], cost)

    def _admitted(
        self, headers: dict[str, str],
        charges: list[tuple[ServerRateLimit, Limiter | ConcurrencyLimiter, float, float]],
        cost: int,
    ) -> Admission:  # fmt: skip
        adm = Admission(True, headers, None, charges, cost)
        if self.actual is not None:  # drawn per admitted request, in admission order
            adm.actual = min(1.0, max(0.0, self.actual.next()))
            adm.pending = adm.pending or adm.actual < 1.0
        return adm

    def finish(self, adm: Admission, now: float) -> None:
        """The response of an admitted request has ended: release its concurrency slots and
        refund the tokens its response did not use."""
        unused = adm.cost - adm.cost_actual()
        for spec, lim, amount, at in adm.charges:
            if spec.unit == "concurrent":
                lim.release()  # type: ignore[union-attr]
            elif spec.unit == "tokens" and unused > 0:
                lim.refund(now, min(amount, unused), at)
        adm.charges, adm.pending = [], False


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


def _refusal(status: int, adm: Admission) -> web.Response:
    if adm.body is not None:
        content_type, text = adm.body
        return web.Response(status=status, text=text, content_type=content_type.split(";")[0],
                            headers=adm.headers)  # fmt: skip
    return web.Response(status=status, text="rate limited", headers=adm.headers)


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
    adm: Admission | None = None
    logged = False
    raw_cost = request.headers.get(COST_HEADER)
    cost = parse_cost(raw_cost)
    declared = -1 if cost is None else cost

    def row(status: int, decision: str) -> tuple:
        used = declared if adm is None else adm.cost_actual()
        if decision in ("rate_limited", "overloaded", "bad_request"):
            used = 0
        return (run, request_id, attempt, request.method, request.path, arrival,
                time.monotonic(), status, decision, declared, used)  # fmt: skip

    try:
        if cost is None:
            status, decision = STATUS_BAD_REQUEST, "bad_request"
            return web.Response(status=status, text=cost_error(raw_cost))
        if policy is not None:  # rejections are answered at once, without the latency
            if policy.limits:
                adm = policy.admit(request.path, arrival, cost, epoch_s())
                if adm is not None:
                    limit_headers = adm.headers
                    if not adm.allowed:
                        status, decision = 429, "rate_limited"
                        return _refusal(429, adm)
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
                state.log.append(row(status, decision))
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
        if adm is not None and adm.pending:
            policy.finish(adm, time.monotonic())  # type: ignore[union-attr]
        if not logged:
            state.log.append(row(status, decision))
