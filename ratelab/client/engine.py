"""The worker-queue run: producer -> asyncio.Queue -> workers -> aiohttp session -> target.

One :class:`Engine` per run. Everything asyncio (queue, guards, connector, session) is built
inside the running loop by :meth:`Engine.run`, so an Experiment can be run any number of
times, from any loop. Each attempt writes its timestamps straight into the
:class:`~ratelab.records.store.RecordStore` columns by row index (no object per request). A failure
is data: the exception's class name goes into ``error`` and the run goes on. Cancelling the
task that runs :meth:`Engine.run` stops the workers and still returns what was recorded,
with the requests that never finished marked ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import functools
import platform
import random
import secrets
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import version
from types import SimpleNamespace
from typing import Any

import aiohttp
import numpy as np
from aiohttp import hdrs

from ratelab.client.loops import loop_name, stamp_clock, timer_delay_s
from ratelab.experiment.experiment import Experiment
from ratelab.records.schema import ERROR_CANCELLED
from ratelab.records.store import RecordStore

__all__ = ["ID_HEADER", "USER_AGENT", "Engine", "error_name", "parse_retry_after"]

#: The header that carries ``"{run}-{request_id}-{attempt}"`` so the server log joins the rows.
ID_HEADER = "X-Ratelab-Id"


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


#: The row of the attempt the current task is sending (read by the pool-stamping connector).
_current_row: ContextVar[int] = ContextVar("ratelab_row", default=-1)
#: The ``X-Ratelab-Id`` value of the attempt the current task is sending (read by _Request).
_current_id: ContextVar[str | None] = ContextVar("ratelab_id", default=None)

#: aiohttp >= 3.11 waits for a pooled connection in this (private) method; overriding it
#: stamps pool waits without TraceConfig, which fires every trace signal on every request.
_POOL_HOOK = hasattr(aiohttp.TCPConnector, "_wait_for_available_connection")


class _PoolStampingConnector(aiohttp.TCPConnector):
    """A TCPConnector that records, for the attempt being sent, when it began waiting for a
    pooled connection and when it got one (= when the request went out)."""

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._engine = engine

    async def _wait_for_available_connection(self, key: Any, traces: Any) -> None:
        e, row = self._engine, _current_row.get()
        store = e.store
        if row >= 0 and np.isnan(store.pool_queued_s[row]):
            store.pool_queued_s[row] = e.now() - e.t0
        await super()._wait_for_available_connection(key, traces)  # type: ignore[misc]
        if row >= 0:
            t = e.now() - e.t0
            store.pool_acquired_s[row] = t
            store.sent_s[row] = t


def parse_retry_after(value: str) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110)."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@functools.cache
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("ratelab", "aiohttp", "aiolimiter", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # pragma: no cover - an uninstalled checkout
            out[pkg] = "unknown"
    return out


#: Every request names ratelab (politeness towards hosts that are not this machine).
USER_AGENT = f"ratelab/{_versions()['ratelab']} (+aiohttp)"


class _Request(aiohttp.ClientRequest):
    """aiohttp's request with ratelab's User-Agent and the attempt's id header written in
    directly. Passing them as ``headers=`` costs ~3 us per request (copying the session's
    default headers, then merging a dict, measured); this writes two entries."""

    def update_auto_headers(self, skip_auto_headers: Any) -> None:
        headers = self.headers
        if hdrs.USER_AGENT not in headers:
            headers[hdrs.USER_AGENT] = USER_AGENT
        rid = _current_id.get()
        if rid is not None:
            headers[ID_HEADER] = rid
        super().update_auto_headers(skip_auto_headers)


class Engine:
    """Runs one Experiment once. ``completed`` counts finished attempts (for progress bars)."""

    def __init__(
        self,
        experiment: Experiment,
        *,
        base_url: str,
        on_tick: Callable[[int], None] | None = None,
        tick_s: float = 0.1,
    ) -> None:
        self.experiment = experiment
        self.base_url = base_url.rstrip("/")
        self.on_tick = on_tick
        self.tick_s = tick_s
        self.completed = 0
        self.run_token = secrets.token_hex(4)
        exp = experiment
        n = exp.requests
        rng = np.random.default_rng(exp.seed)
        self.endpoints = list(exp.endpoints)
        weights = np.array([exp.endpoints[p] for p in self.endpoints])  # type: ignore[index]
        codes = rng.choice(len(self.endpoints), size=n, p=weights / weights.sum())
        self.think_s = exp.think_time.sample(rng, n) if exp.think_time is not None else None
        self.arrival_s = exp.arrivals.times(rng, n) if exp.arrivals is not None else None
        self.codes: list[int] = codes.tolist()  # cheaper to index than numpy
        self.method = exp.method
        self.store = RecordStore(n, endpoints=self.endpoints, methods=[exp.method])
        self.store.add_requests(np.arange(n), codes, np.zeros(n, np.int32))
        self.t0 = 0.0

    # -- the run -------------------------------------------------------------------------
    async def run(self) -> tuple[RecordStore, dict[str, Any]]:
        """Run to the end (or until cancelled); return the store and the run's metadata."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.now = stamp_clock(loop)  # full resolution even where loop.time() is coarse
        exp = self.experiment
        built = exp.strategy.build()
        self.guards = built.guards
        self.retry = built.retry
        self.retry_rng = random.Random(exp.seed)
        started_at = datetime.now(UTC).isoformat()
        wall0 = time.perf_counter()
        limits = {"limit": built.limit, "limit_per_host": built.limit_per_host}
        trace_configs = []
        self.stamp_pool = bool(built.limit or built.limit_per_host)  # else it never waits
        if self.stamp_pool and _POOL_HOOK:
            connector: aiohttp.TCPConnector = _PoolStampingConnector(self, **limits)
        else:
            connector = aiohttp.TCPConnector(**limits)
            if self.stamp_pool:  # an older aiohttp: the trace signals are the way in
                trace_configs.append(self._pool_trace())
        session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=trace_configs,
            timeout=aiohttp.ClientTimeout(total=exp.timeout_s),
            request_class=_Request,  # adds the User-Agent and the X-Ratelab-Id header
        )
        self.session = session
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.urls = [self.base_url + p for p in self.endpoints]
        self.t0 = self.now()
        interrupted = False
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.arrival_s is None:
                self.store.scheduled_s[: exp.requests] = 0.0
                for i in range(exp.requests):
                    self.queue.put_nowait(i)
            else:
                tasks.append(loop.create_task(self._produce()))
            tasks += [loop.create_task(self._worker(w)) for w in range(exp.workers)]
            if self.on_tick is not None:
                tasks.append(loop.create_task(self._ticker()))
            if self.arrival_s is not None:
                await tasks[0]
            await self.queue.join()
        except asyncio.CancelledError:
            interrupted = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session.close()
            for g in self.guards:
                await g.aclose()
        self._mark_unfinished()
        if self.on_tick is not None:
            self.on_tick(self.completed)
        meta: dict[str, Any] = {
            **_versions(),
            "started_at": started_at,
            "seed": exp.seed,
            "wall_s": time.perf_counter() - wall0,
            "interrupted": interrupted,
            "run": self.run_token,
            "loop": loop_name(loop),
            "t0_monotonic": self.t0,
            "target": self.base_url,
            "python_executable": sys.executable,
        }
        for g in self.guards:  # an Adaptive strategy's rate over time, on the run clock
            history = getattr(g, "history", None)
            if history is not None:
                meta["adaptive_rate"] = [(t - self.t0, r) for t, r in history]
        return self.store, meta

    def _mark_unfinished(self) -> None:
        """Rows with no outcome (never dequeued, or cut off) become CancelledError rows."""
        s = self.store
        n = s.n
        open_rows = (s.error[:n] == -1) & np.isnan(s.done_s[:n])
        if open_rows.any():
            s.error[:n][open_rows] = s.error_code(ERROR_CANCELLED)

    async def _produce(self) -> None:
        """Open loop: enqueue each request at its intended arrival time."""
        loop, now, t0, q = self.loop, self.now, self.t0, self.queue
        arrivals = self.arrival_s
        assert arrivals is not None  # internal invariant, not user input
        self.store.scheduled_s[: len(arrivals)] = arrivals
        for i, at in enumerate(arrivals.tolist()):
            delay = t0 + at - now()
            if delay > 0:
                await asyncio.sleep(timer_delay_s(loop, delay))
            q.put_nowait(i)

    async def _ticker(self) -> None:
        on_tick = self.on_tick
        assert on_tick is not None
        while True:
            await asyncio.sleep(self.tick_s)
            on_tick(self.completed)

    async def _worker(self, wid: int) -> None:
        q = self.queue
        retry = self.retry
        while True:
            row = await q.get()
            try:
                pause = self.think_s[row] if self.think_s is not None else 0.0
                status, error, retry_after = await self._attempt(wid, row, 1, pause)
                attempt = 1
                while (
                    retry is not None
                    and attempt < retry.max_attempts
                    and retry.should_retry(status, error)
                ):
                    pause = retry.backoff(attempt, retry_after, self.retry_rng.random())
                    attempt += 1
                    row = self.store.new_row(row, attempt)
                    status, error, retry_after = await self._attempt(wid, row, attempt, pause)
            finally:
                q.task_done()

    async def _attempt(
        self, wid: int, row: int, attempt: int, pause_s: float
    ) -> tuple[int, str | None, float | None]:
        """One attempt, recorded in ``row``: pause (think time, or a retry's backoff), guards,
        request. Returns (status, error, Retry-After seconds if the server sent one)."""
        s = self.store
        now = self.now
        t0 = self.t0
        code = self.codes[row] if attempt == 1 else int(s.endpoint[row])
        endpoint = self.endpoints[code]
        s.worker[row] = wid
        t = now() - t0
        s.dequeued_s[row] = t
        if pause_s > 0:
            await asyncio.sleep(pause_s)
            t = now() - t0
        s.ready_s[row] = t
        guards = self.guards
        held = 0
        status = 0
        error: str | None = None
        retry_after: float | None = None
        try:
            if guards:
                for g in guards:
                    await g.acquire(endpoint)
                    held += 1
                t = now() - t0
            s.admitted_s[row] = t
            s.sent_s[row] = t
            rid = row if attempt == 1 else int(s.request_id[row])
            _current_id.set(f"{self.run_token}-{rid}-{attempt}")
            if self.stamp_pool:
                _current_row.set(row)
            async with self.session.request(self.method, self.urls[code]) as resp:
                s.headers_s[row] = now() - t0
                status = resp.status
                s.status[row] = status
                if status >= 400 and "Retry-After" in resp.headers:
                    retry_after = parse_retry_after(resp.headers["Retry-After"])
                body = await resp.read()
            s.bytes[row] = len(body)
        except asyncio.CancelledError:
            s.error[row] = s.error_code(ERROR_CANCELLED)
            raise
        except Exception as e:  # a failure is data, never a crashed run
            error = error_name(e)
            s.error[row] = s.error_code(error)
        finally:
            s.done_s[row] = now() - t0
            if held:
                for g in guards[:held]:
                    g.release(endpoint)
            self.completed += 1
        if guards:
            for g in guards:
                g.observe(status, error)
        return status, error, retry_after

    def _pool_trace(self) -> aiohttp.TraceConfig:
        """Stamp pool waits from aiohttp's trace signals (the row: the sending task's
        ``_current_row``, as for the connector hook)."""
        store = self.store

        async def queued_start(
            session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object
        ) -> None:
            row = _current_row.get()
            if row >= 0 and np.isnan(store.pool_queued_s[row]):  # the first wait counts
                store.pool_queued_s[row] = self.now() - self.t0

        async def queued_end(
            session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object
        ) -> None:
            row = _current_row.get()
            if row >= 0:
                t = self.now() - self.t0
                store.pool_acquired_s[row] = t
                store.sent_s[row] = t

        tc = aiohttp.TraceConfig()
        tc.on_connection_queued_start.append(queued_start)
        tc.on_connection_queued_end.append(queued_end)
        return tc
