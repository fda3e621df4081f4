"""The worker-queue run: producer -> asyncio.Queue -> workers -> guards -> transport.

One :class:`Engine` per run. It takes a *transport* (how an attempt is sent: aiohttp over
sockets by default, see :mod:`ratelab.client.transports`) and a *clock* (what stamps are
read from: by default the loop's clock at full resolution, so a virtual-clock loop from
:mod:`ratelab.testing` drives the whole run). Everything asyncio (queue, guards, the
transport's session) is built inside the running loop by :meth:`Engine.run`, so an
Experiment can run any number of times, from any loop.

Each attempt writes its times straight into the :class:`~ratelab.records.store.RecordStore`
columns by row index (no object per request). Failures:

- what fails *an attempt* (the transport raises, a guard's ``acquire`` raises) is that
  attempt's row: the exception's name goes into ``error`` and the run goes on;
- what fails *the run* (a guard's ``release``/``observe``/``aclose``, a strategy's
  ``guard()``, the transport's ``open``/``aclose``, the progress callback, the engine's own
  bookkeeping) ends it at once with :class:`~ratelab.errors.RunError` naming the part, the
  rows recorded so far attached. Nothing waits forever on a worker that died.

Cancelling the task that runs :meth:`Engine.run` stops the workers and still returns what
was recorded, with the requests that never finished marked ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np

from ratelab.client.guards import takes_cost, takes_headers
from ratelab.client.loops import loop_name, stamp_clock, timer_delay_s
from ratelab.client.transports import transport_for
from ratelab.client.transports.base import HeaderNames, RequestSpec, Stamps, Transport
from ratelab.client.watch.sampler import DEFAULT_INTERVAL_S, SourceFailed, StateSampler
from ratelab.errors import RunError
from ratelab.experiment.experiment import Experiment, check_costs, check_drawn
from ratelab.experiment.request_options import check_sendable
from ratelab.experiment.strategies import Retry
from ratelab.records.schema import ERROR_CANCELLED
from ratelab.records.store import RecordStore
from ratelab.versions import versions

__all__ = ["Engine", "parse_retry_after"]

#: The shortest wait between two calls of ``on_tick`` (whatever the callback asks for).
MIN_TICK_S = 0.01


def parse_retry_after(value: str) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110).

    None when the value is neither (or ``nan``). The result may be huge or ``inf``
    (``Retry-After: inf``, a date in the year 9999): :meth:`Retry.backoff` caps it at
    ``max_backoff_s``."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, says RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def request_specs(exp: Experiment, urls: list[str]) -> dict[str, RequestSpec]:
    """What each endpoint's requests carry, by URL (only those that carry something): the
    Experiment's headers/body/auth, with the endpoint's overrides (its headers on top, its
    body instead)."""
    out: dict[str, RequestSpec] = {}
    for path, url in zip(exp.endpoints, urls, strict=True):
        o = exp.endpoint_options.get(path, {})
        headers = {**(exp.headers or {}), **o.get("headers", {})} or None
        own_body = "json" in o or "data" in o
        json = o.get("json") if own_body else exp.json
        data = o.get("data") if own_body else exp.data
        auth = exp.auth if isinstance(exp.auth, tuple) else None
        if headers or json is not None or data is not None or auth is not None:
            out[url] = RequestSpec(headers=headers, json=json, data=data, auth=auth)
    return out


class _Failed(Exception):
    """Internal: a worker, the producer or the ticker hit a failure that ends the run."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class Engine:
    """Runs one Experiment once. ``completed`` counts finished attempts (for progress bars).

    ``transport`` sends the attempts (default: a fresh one for the Experiment's ``client``,
    :func:`ratelab.client.transports.transport_for`); ``clock`` is
    read for every stamp (default: the running loop's clock, see
    :func:`ratelab.client.loops.stamp_clock`). A clock must advance with the loop's timers:
    the engine waits with ``asyncio.sleep``.
    """

    def __init__(
        self,
        experiment: Experiment,
        *,
        base_url: str,
        transport: Transport | None = None,
        clock: Callable[[], float] | None = None,
        on_tick: Callable[[int], float | None] | None = None,
        tick_s: float = 0.1,
        state_interval_s: float | None = DEFAULT_INTERVAL_S,
    ) -> None:
        self.experiment = experiment
        self.base_url = base_url.rstrip("/")
        self.transport = transport
        self.clock = clock
        self.on_tick = on_tick
        self.tick_s = tick_s
        self.state_interval_s = state_interval_s  # None: no state sampled
        self.sampler: StateSampler | None = None
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
        if self.think_s is not None:  # LogNormal(1, 1e10) draws inf: a sleep for ever
            check_drawn("think_time", exp.think_time, self.think_s)
        if self.arrival_s is not None:
            check_drawn("arrivals", exp.arrivals, self.arrival_s)
        # costs are drawn last, so a seed's endpoints, think and arrival times stay the same
        costs = None
        if exp.cost is not None:
            costs = np.rint(exp.cost.sample(rng, n))  # whole tokens
            check_costs(exp.cost, costs)
        self.has_costs = costs is not None
        self.codes: list[int] = codes.tolist()  # cheaper to index than numpy
        opts = exp.endpoint_options
        self.methods = [opts.get(p, {}).get("method", exp.method) for p in self.endpoints]
        methods = list(dict.fromkeys(self.methods))
        self.store = RecordStore(n, endpoints=self.endpoints, methods=methods)
        method_codes = np.array([methods.index(m) for m in self.methods], np.int32)[codes]
        self.store.add_requests(np.arange(n), codes, method_codes)
        if costs is not None:
            self.store.cost[:n] = costs  # a retry's row copies it (RecordStore.new_row)
        self.t0 = 0.0

    # -- the run -------------------------------------------------------------------------
    async def run(self) -> tuple[RecordStore, dict[str, Any]]:
        """Run to the end (or until cancelled); return the store and the run's metadata.

        Raises :class:`~ratelab.errors.RunError` (with ``records`` = (store, meta) of the
        rows so far) when a part of the run fails in a way that cannot be a row.
        """
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.now = now = self.clock if self.clock is not None else stamp_clock(loop)
        exp = self.experiment
        if self.transport is None:  # the Experiment's client: aiohttp (default) or httpx
            check_sendable(exp)  # no redacted secret, no request function lost in a file
            self.transport = transport_for(exp.client, request=exp.request)  # type: ignore[arg-type]
        transport = self.transport
        self._build_guards()
        self.retry_rng = random.Random(exp.seed)
        started_at = datetime.now(UTC).isoformat()
        wall0 = time.perf_counter()
        self.stamps = Stamps(self.store, now)
        limit, limit_per_host = exp.strategy.build_limits()
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.urls = [self.base_url + p for p in self.endpoints]
        transport.send_costs = exp.cost is not None
        transport.prepare(specs=request_specs(exp, self.urls), header_names=HeaderNames(
            exp.record_headers))  # fmt: skip
        interrupted = False
        failure: RunError | None = None
        opened = False
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                await transport.open(
                    self.stamps, limit=limit, limit_per_host=limit_per_host,
                    timeout_s=exp.timeout_s,
                )  # fmt: skip
                opened = True
                self._send = transport.send  # bound once: the hot path calls it per attempt
            except Exception as e:
                raise RunError(f"transport {transport.name}.open", e) from e
            self.t0 = self.stamps.t0 = now()
            if self.arrival_s is None:
                self.store.scheduled_s[: exp.requests] = 0.0
                for i in range(exp.requests):
                    self.queue.put_nowait(i)
            else:
                tasks.append(loop.create_task(self._produce()))
            workers = max(1, min(exp.workers, exp.requests))  # more would only idle
            tasks += [loop.create_task(self._worker(w)) for w in range(workers)]
            if self.on_tick is not None:
                tasks.append(loop.create_task(self._ticker()))
            if self.state_interval_s is not None:  # the guards' and the pool's state
                tasks.append(loop.create_task(self._sample_state()))
            await self._until_done(tasks)
        except asyncio.CancelledError:
            interrupted = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except RunError as e:
            failure = e
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            closers: list[tuple[str, Callable[[], Any]]] = []
            if opened:
                closers.append((f"transport {transport.name}.aclose", transport.aclose))
            closers += [
                (f"guard {lb}.aclose", g.aclose)
                for lb, g in zip(self.labels, self.guards, strict=True)
            ]
            for where, aclose in closers:
                try:
                    await aclose()
                except Exception as e:
                    if failure is None:
                        failure = RunError(where, e)
                        failure.__cause__ = e
        self._mark_unfinished()
        if self.on_tick is not None and failure is None:
            self.on_tick(self.completed)
        meta: dict[str, Any] = {
            **versions(),
            "started_at": started_at,
            "seed": exp.seed,
            "wall_s": time.perf_counter() - wall0,
            "interrupted": interrupted or failure is not None,
            "run": self.run_token,
            "loop": loop_name(loop),
            "transport": transport.name,
            "t0_monotonic": self.t0,
            "target": self.base_url,
            "python_executable": sys.executable,
        }
        if failure is not None:
            meta["failed"] = failure.where
        for g in self.guards:  # an Adaptive strategy's rate over time, on the run clock
            history = getattr(g, "history", None)
            if history is not None:
                meta["adaptive_rate"] = [(t - self.t0, r) for t, r in history]
        if failure is not None:
            failure.records = (self.store, meta)
            raise failure
        return self.store, meta

    def _build_guards(self) -> None:
        """Each strategy part's guard (``Strategy.guard()``), labelled by the part's repr."""
        guards, labels = [], []
        retry: Retry | None = None
        for part in self.experiment.strategy.parts:
            try:
                g = part.guard()
            except Exception as e:
                raise RunError(f"strategy {part!r}.guard()", e) from e
            if g is not None:
                guards.append(g)
                labels.append(repr(part))
            if isinstance(part, Retry):
                retry = part
        self.guards = tuple(guards)
        self.labels = tuple(labels)
        self.retry = retry
        # which guards take the request's cost / the response headers (Guard's docstring)
        self.guard_costs = tuple(takes_cost(g) for g in guards)
        self.guard_headers = tuple(takes_headers(g) for g in guards)

    async def _until_done(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait until every request is done (in open loop: enqueued, then done); end at once
        if a task fails."""
        producer = tasks[0] if self.arrival_s is not None else None
        join = None if producer is not None else asyncio.ensure_future(self.queue.join())
        watch: set[asyncio.Future[Any]] = {*tasks} if join is None else {join, *tasks}
        try:
            while True:
                done, watch = await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
                if join is not None and join in done:
                    return
                for t in done:
                    exc = None if t.cancelled() else t.exception()
                    if isinstance(exc, _Failed):
                        raise RunError(exc.where, exc.__cause__ or exc) from exc.__cause__
                    if exc is not None:
                        where = "the open-loop producer" if t is producer else "the engine"
                        raise RunError(where, exc) from exc
                    if t is producer:  # every request is enqueued: now wait for them
                        join = asyncio.ensure_future(self.queue.join())
                        watch.add(join)
        finally:
            if join is not None:
                join.cancel()

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
        if arrivals is None:  # pragma: no cover - only started for open-loop runs
            return
        self.store.scheduled_s[: len(arrivals)] = arrivals
        for i, at in enumerate(arrivals.tolist()):
            delay = t0 + at - now()
            if delay > 0:
                await asyncio.sleep(timer_delay_s(loop, delay))
            q.put_nowait(i)

    async def _ticker(self) -> None:
        on_tick = self.on_tick
        if on_tick is None:  # pragma: no cover - only started with a callback
            return
        delay_s = self.tick_s
        while True:
            await asyncio.sleep(delay_s)
            try:
                due_s = on_tick(self.completed)
            except Exception as e:
                raise _Failed("the progress callback") from e
            # a callback may say when it wants the next call (a live view's next frame)
            delay_s = self.tick_s if due_s is None else min(self.tick_s, max(due_s, MIN_TICK_S))

    async def _sample_state(self) -> None:
        """Sample the guards' and the pool's state (:mod:`ratelab.client.watch.sampler`)."""
        sources = [
            (lb, f"guard {lb}", g.state) for lb, g in zip(self.labels, self.guards, strict=True)
        ]
        tr: Any = self.transport
        sources.append(("pool", f"transport {tr.name}", tr.state))
        self.sampler = StateSampler(sources, self.state_interval_s or DEFAULT_INTERVAL_S)
        try:
            await self.sampler.run(self.now, self.t0)
        except SourceFailed as e:
            raise _Failed(e.where) from e.__cause__

    def state_frame(self) -> Any:
        """``result.state``: the sampled state as a long frame (t_s, guard, quantity,
        value; guard = the strategy part's label, or ``"pool"``), empty if none."""
        from ratelab.client.watch.sampler import empty_state

        if self.sampler is None:
            return empty_state()
        return self.sampler.frame()

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
                    try:
                        pause = retry.backoff(attempt, retry_after, self.retry_rng.random())
                        attempt += 1
                        row = self.store.new_row(row, attempt)
                    except Exception as e:
                        raise _Failed(f"the retry of request {self.store.request_id[row]}") from e
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
        headers: Any = None
        try:
            if guards:
                cost = float(s.cost[row]) if self.has_costs else None
                for g, with_cost in zip(guards, self.guard_costs, strict=True):
                    await (g.acquire(endpoint, cost) if with_cost else g.acquire(endpoint))
                    held += 1
                t = now() - t0
            s.admitted_s[row] = t
            s.sent_s[row] = t
            rid = row if attempt == 1 else int(s.request_id[row])
            reply = await self._send(
                row, self.methods[code], self.urls[code], f"{self.run_token}-{rid}-{attempt}"
            )
            status, retry_header, nbytes = reply[0], reply[1], reply[2]
            if len(reply) > 3:  # the response headers (a three-element reply has none)
                headers = reply[3]  # type: ignore[misc]
            s.status[row] = status
            s.bytes[row] = nbytes
            if retry_header is not None:
                retry_after = parse_retry_after(retry_header)
        except asyncio.CancelledError:
            s.error[row] = s.error_code(ERROR_CANCELLED)
            raise
        except Exception as e:  # a failure is data, never a crashed run
            error = self.transport.error_name(e)  # type: ignore[union-attr]
            s.error[row] = s.error_code(error)
            if s.pool_queued_s[row] == s.pool_queued_s[row] and np.isnan(s.pool_acquired_s[row]):
                s.sent_s[row] = np.nan  # waited for a connection, never got one: never sent
        finally:
            s.done_s[row] = now() - t0
            self.completed += 1
            if held:
                for i in range(held):
                    try:
                        guards[i].release(endpoint)
                    except Exception as e:
                        raise _Failed(f"guard {self.labels[i]}.release") from e
        if guards:
            for i, g in enumerate(guards):
                try:
                    if self.guard_headers[i]:
                        g.observe(status, error, headers)  # type: ignore[call-arg]
                    else:
                        g.observe(status, error)
                except Exception as e:
                    raise _Failed(f"guard {self.labels[i]}.observe") from e
        return status, error, retry_after
