"""Guards: the client-side gates a request passes before it is sent, one per strategy part.

A :class:`Guard` is built for one run inside the running loop (``Strategy.guard()``); the
engine awaits ``acquire`` before the attempt, calls ``release`` after it whatever happened,
shows it every outcome with ``observe``, and awaits ``aclose`` once when the run ends.

- :class:`LimiterGuard` (``RateLimit``): aiolimiter's ``AsyncLimiter``;
- :class:`SemaphoreGuard` (``Concurrency``): an ``asyncio.Semaphore`` held for the attempt;

and small, exact limiters that aiolimiter does not offer. Each reads time only from
``loop.time()`` and serves waiters in FIFO order (slots reserved in arrival order), so a
controlled clock gives exact, repeatable schedules. Waits are rounded up to the loop's timer
resolution (:func:`ratelab.client.loops.timer_delay_s`), so on uvloop a sub-millisecond wait
does not turn into a busy loop.

- :class:`TokenBucketGuard`: a bucket of ``burst`` tokens, full at the start, refilled at
  ``rate_per_s``; each request takes one token or waits for it.
- :class:`SlidingWindowGuard`: at most ``limit`` admissions in any window of ``window_s``
  (an exact sliding log of admission times).
- :class:`AdaptiveGuard`: AIMD pacing; requests are spaced ``1 / rate`` apart, the rate is
  cut multiplicatively on 429/503 and grows additively with every success.

These three keep their books on IDEAL times: a request is booked at the moment it was
allowed to go (its arrival, or the moment the limit had room), not at the moment its timer
fired. A timer fires late (by up to a millisecond: epoll's timeout is in whole
milliseconds), and booking the late time would lose that lateness on every wait: at 600/s a
burst-free bucket delivered about 460/s. Booked ideally, the lateness is carried forward
(the next request's due time may already have passed, and it goes at once), so the rate over
time is the configured one. They book by reservation: each request takes its slot as it
arrives, in arrival order, and sleeps until it, so every request that is due wakes in the
same loop iteration (a lock handed from waiter to waiter lets one go per iteration).

The limits that ``rl.AllOf`` can hold (:class:`LimiterGuard`, :class:`SemaphoreGuard`,
:class:`TokenBucketGuard`, :class:`SlidingWindowGuard`) also say when they would have room
without taking it (``_ready_at``) and take at once (``_take``): see
:mod:`ratelab.client.limits.all_of`.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiolimiter import AsyncLimiter

from ratelab.client.loops import timer_delay_s, timer_resolution_s

__all__ = [
    "AdaptiveGuard",
    "Guard",
    "LimiterGuard",
    "SemaphoreGuard",
    "SlidingWindowGuard",
    "TokenBucketGuard",
    "takes_cost",
    "takes_headers",
]


class Guard:
    """A client-side gate a request passes before it is sent: the public base class of
    every guard, built-in or your own (``rl.Guard``).

    A :class:`~ratelab.experiment.strategies.Strategy` describes; its ``guard()`` builds
    one Guard per run, INSIDE the running loop, when the run starts (in a multi-process
    run, one per process: the strategy travels as plain data, the guard never does). So
    ``__init__`` may call ``asyncio.get_running_loop()`` and create asyncio objects (locks,
    semaphores, events), and a guard is never shared between runs or loops. Every worker
    of the run shares it. Read time from ``loop.time()``: then a
    :class:`~ratelab.testing.VirtualClockLoop` gives exact, repeatable schedules.

    The engine calls, per attempt (each retry is an attempt of its own):

    ``await acquire(endpoint)`` or ``await acquire(endpoint, cost)``
        After the think time or retry backoff, before the request is sent; may wait. The
        strategy's guards are acquired in the order written (``a + b``: ``a`` first). The
        wait is the row's ``admitted_s - ready_s``. Raising fails the attempt (an error
        row named after the exception) without sending it; a cancelled run cancels it.
        A guard whose ``acquire`` takes a second parameter gets the request's ``cost``
        (whole tokens, a float; None when the Experiment has no ``cost``).
    ``release(endpoint)``
        Once the attempt is over, whatever happened (response read, error, timeout,
        cancellation), exactly once for each ``acquire`` that returned, and never for one
        that raised or was cancelled. Plain (not async): it must not wait.
    ``observe(status, error)`` or ``observe(status, error, headers)``
        After ``release``, on every guard of the strategy, with the attempt's outcome:
        the HTTP ``status`` (0 when no response came) and ``error`` (the exception's class
        name, or None). Not called for an attempt cancelled by the end of the run. Plain.
        A guard whose ``observe`` takes a third parameter also gets the response's
        ``headers`` (a case-insensitive mapping of str; None when no response came or the
        transport does not return headers).

    Which form a guard's ``acquire`` and ``observe`` take is read from their signatures
    once, when the run starts (:func:`takes_cost`, :func:`takes_headers`), so a guard
    written for the two-parameter forms keeps working unchanged.
    ``await aclose()``
        Once, when the run ends (also after an interrupt), after the HTTP session is
        closed: release what the guard holds outside the process (e.g. connections to a
        shared store).
    ``state()``
        What the gate holds right now, as ``{quantity: number}`` (e.g. ``{"level": 3.0,
        "waiters": 2.0}``): sampled every ``state_interval_s`` of the run into
        ``result.state`` (``rl.plot_state``). Plain, cheap and read-only: it must not
        change the gate, wait, or call anything outside the process. Default: ``{}``
        (nothing sampled). Keep the same keys for the whole run.

    Each method's default does nothing, so a guard overrides only what it needs; all are
    called on the loop's thread, one at a time (no thread locks needed; an
    ``asyncio.Lock`` makes waiters go first come, first served).
    """

    __slots__ = ()

    async def acquire(self, endpoint: str) -> None:
        """Wait until the request to ``endpoint`` may go."""

    def release(self, endpoint: str) -> None:
        """The attempt that ``acquire`` let through is over."""

    def observe(self, status: int, error: str | None) -> None:
        """An attempt finished with ``status`` (0: no response) and ``error`` (or None)."""

    async def aclose(self) -> None:
        """The run is over: release what the guard holds (connections to a shared store)."""

    def state(self) -> Mapping[str, float]:
        """What the gate holds now, ``{quantity: number}``; sampled into ``result.state``."""
        return {}


def _positional(method: object) -> int:
    """How many positional arguments a bound method accepts (a ``*args``: many)."""
    try:
        params = inspect.signature(method).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 99
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def takes_cost(guard: Guard) -> bool:
    """Whether ``guard.acquire`` takes the request's cost: ``acquire(endpoint, cost)``."""
    return _positional(guard.acquire) >= 2


def takes_headers(guard: Guard) -> bool:
    """Whether ``guard.observe`` takes the response headers: ``observe(status, error,
    headers)``."""
    return _positional(guard.observe) >= 3


class _AsyncLimiter(AsyncLimiter):
    """aiolimiter's limiter, unchanged on asyncio. On a loop whose timers fire at once below
    a resolution (uvloop: 1 ms), a wake-up closer than that is moved out to one tick, so
    waiting for a sub-millisecond gap does not busy-loop (measured: a whole core at 5,000/s
    without this). The bucket leaks by elapsed time, so the rate over time is unchanged."""

    def _wake_next(self, *args: object) -> None:
        super()._wake_next(*args)
        handle = getattr(self, "_waker_handle", None)  # aiolimiter >= 1.2
        if handle is None:
            return
        loop = self._loop
        tick = timer_resolution_s(loop)
        if not tick:
            return
        when = getattr(handle, "when", None)  # uvloop: a delay <= 0 gives a plain Handle
        if when is None or when() - loop.time() < tick:
            handle.cancel()
            self._waker_handle = loop.call_later(tick, self._wake_next)


class LimiterGuard(Guard):
    """``RateLimit``: aiolimiter's ``AsyncLimiter(max_rate, period_s)`` before each request;
    with ``tokens``, each request acquires its cost (``acquire(amount)``), else 1."""

    __slots__ = ("_by_cost", "_limiter")

    def __init__(self, max_rate: float, period_s: float, *, tokens: bool = False) -> None:
        self._limiter = _AsyncLimiter(max_rate, period_s)
        self._by_cost = tokens

    async def acquire(self, endpoint: str, cost: float | None = None) -> None:
        await self._limiter.acquire(cost if self._by_cost and cost is not None else 1)

    def _ready_at(self, endpoint: str, cost: float | None, arrival: float) -> float:
        limiter = self._limiter
        amount = cost if self._by_cost and cost is not None else 1
        if limiter.has_capacity(amount):  # leaks to now first
            return arrival
        needed = limiter._level + amount - limiter.max_rate  # aiolimiter's own wait rule
        return limiter._last_check + needed / limiter._rate_per_sec

    async def _take(self, endpoint: str, cost: float | None, at: float) -> None:
        # never suspends: called right after _ready_at said there is room, and the
        # bucket only leaks while time goes on
        await self.acquire(endpoint, cost)

    def state(self) -> Mapping[str, float]:
        """``level``: aiolimiter's bucket, leaked to now (0: empty, room for a burst of
        ``max_rate``); ``waiters``: acquires waiting for room."""
        lim = self._limiter
        level = lim._level
        if level:
            elapsed = lim._loop.time() - lim._last_check
            level = max(level - elapsed * lim._rate_per_sec, 0.0)
        return {"level": float(level), "waiters": float(len(lim._waiters))}


class SemaphoreGuard(Guard):
    """``Concurrency``: an ``asyncio.Semaphore(n)`` held for the whole attempt."""

    __slots__ = ("_endpoint", "_n", "_semaphore")

    def __init__(self, n: int, endpoint: str | None) -> None:
        self._semaphore = asyncio.Semaphore(n)
        self._endpoint = endpoint
        self._n = n

    async def acquire(self, endpoint: str) -> None:
        if self._endpoint is None or endpoint == self._endpoint:
            await self._semaphore.acquire()

    def release(self, endpoint: str) -> None:
        if self._endpoint is None or endpoint == self._endpoint:
            self._semaphore.release()

    def _ready_at(self, endpoint: str, cost: float | None, arrival: float) -> float:
        if self._endpoint is not None and endpoint != self._endpoint:
            return arrival
        return math.inf if self._semaphore.locked() else arrival  # inf: until a release

    async def _take(self, endpoint: str, cost: float | None, at: float) -> None:
        await self.acquire(endpoint)  # not locked: takes a slot without suspending

    def state(self) -> Mapping[str, float]:
        """``holders``: attempts holding the semaphore; ``waiters``: waiting for it."""
        sem = self._semaphore
        waiters = sem._waiters
        waiting = sum(not w.done() for w in waiters) if waiters else 0
        return {"holders": float(self._n - sem._value), "waiters": float(waiting)}


async def _sleep_until(guard: Any, loop: asyncio.AbstractEventLoop, at: float) -> None:
    """Sleep until ``at`` on ``loop`` (a reservation's ideal time), counted in the guard's
    ``_waiting`` (its ``waiters`` in ``state()``) while it sleeps."""
    delay = at - loop.time()
    if delay > 0:
        guard._waiting += 1
        try:
            await asyncio.sleep(timer_delay_s(loop, delay))
        finally:
            guard._waiting -= 1


class TokenBucketGuard(Guard):
    __slots__ = ("_burst", "_last", "_loop", "_rate", "_tokens", "_waiting")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._tokens = burst  # the bucket at time _last (the latest booked time)
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._waiting = 0  # requests sleeping until their reserved slot

    def _refill(self, at: float) -> None:
        """The bucket at ``at`` (never before the time it was last booked at)."""
        if at > self._last:
            self._tokens = min(self._burst, self._tokens + (at - self._last) * self._rate)
            self._last = at

    def _ready_at(self, endpoint: str, cost: float | None, arrival: float) -> float:
        """When a request that arrived at ``arrival`` may take a token (the ideal time)."""
        at = max(arrival, self._last)
        tokens = min(self._burst, self._tokens + (at - self._last) * self._rate)
        return at if tokens >= 1 else at + (1 - tokens) / self._rate

    async def _take(self, endpoint: str, cost: float | None, at: float) -> None:
        self._refill(at)
        self._tokens = max(0.0, self._tokens - 1)  # at a due time the bucket holds 1 (+ ulps)

    async def acquire(self, endpoint: str) -> None:
        # A reservation: the token is booked at the request's ideal time `at` as it
        # arrives (first come, first served), then it sleeps until then. Lateness carries,
        # and several due requests wake in one loop iteration (a lock handed from waiter to
        # waiter admits one per iteration: under load that, not the rate, was the limit).
        loop = self._loop
        at = self._ready_at(endpoint, None, loop.time())
        self._refill(at)
        self._tokens = max(0.0, self._tokens - 1)
        await _sleep_until(self, loop, at)

    def state(self) -> Mapping[str, float]:
        """``tokens``: the bucket's tokens now (refilled to now; a bucket booked ahead is
        counted back to now, at least 0); ``waiters``."""
        elapsed = self._loop.time() - self._last
        tokens = min(self._burst, max(0.0, self._tokens + elapsed * self._rate))
        return {"tokens": float(tokens), "waiters": _waiters(self)}


class SlidingWindowGuard(Guard):
    __slots__ = ("_limit", "_log", "_loop", "_waiting", "_window")

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window = window_s
        self._log: deque[float] = deque()  # booked admission times, oldest first
        self._loop = asyncio.get_running_loop()
        self._waiting = 0  # requests sleeping until their reserved slot

    def _ready_at(self, endpoint: str, cost: float | None, arrival: float) -> float:
        """When a request that arrived at ``arrival`` may go: the ideal time, at or after
        the last booked admission, when the window before it holds fewer than ``limit``."""
        log, window = self._log, self._window
        at = max(arrival, log[-1]) if log else arrival
        while log and log[0] <= at - window:
            log.popleft()  # out of every window from now on (booked times never go back)
        if len(log) >= self._limit:
            at = log[-self._limit] + window
        return at

    async def _take(self, endpoint: str, cost: float | None, at: float) -> None:
        self._log.append(at)

    async def acquire(self, endpoint: str) -> None:
        # a reservation at the ideal time, as TokenBucketGuard's
        loop = self._loop
        at = self._ready_at(endpoint, None, loop.time())
        self._log.append(at)
        await _sleep_until(self, loop, at)

    def state(self) -> Mapping[str, float]:
        """``in_window``: the admissions in its log that lie in the last ``window_s`` (a
        guard that books ahead may have dropped past ones); ``waiters``."""
        now = self._loop.time()
        start = now - self._window
        return {
            "in_window": float(sum(start < t <= now for t in self._log)),  # not booked ahead
            "waiters": _waiters(self),
        }


class AdaptiveGuard(Guard):
    """AIMD: ``rate`` starts at ``start``; a 429/503 multiplies it by ``decrease`` (at most
    once per ``cooldown_s``), each other response adds ``increase / rate`` (so the rate
    climbs by about ``increase`` per second while all goes well). ``history`` keeps
    ``(time, rate)`` at every change, on the loop clock.

    Each request reserves its slot (``1 / rate`` after the previous one, at the rate when
    that one reserved) when it arrives and sleeps until then, booked at the ideal time as
    TokenBucketGuard's. A cut voids the slots handed out but not yet reached: their
    requests wake at their old slot and take new ones, from the slot after the latest
    request that went, spaced at the new rate."""

    __slots__ = ("_after_go", "_cooldown", "_cuts", "_last_cut", "_loop", "_next", "_waiting",
                 "history", "params", "rate")  # fmt: skip

    def __init__(
        self,
        start: float,
        *,
        minimum: float,
        maximum: float,
        increase: float,
        decrease: float,
        cooldown_s: float,
        backoff_statuses: frozenset[int],
    ) -> None:
        self.rate = start
        self.params = (minimum, maximum, increase, decrease, backoff_statuses)
        self._cooldown = cooldown_s
        self._loop = asyncio.get_running_loop()
        self._next = self._loop.time()  # the next free slot
        self._after_go = self._next  # the slot after the latest request that went
        self._cuts = 0
        self._waiting = 0  # requests sleeping until their reserved slot
        self._last_cut = -float("inf")
        self.history: list[tuple[float, float]] = [(self._next, start)]

    async def acquire(self, endpoint: str) -> None:
        loop = self._loop
        at = loop.time()
        while True:
            at = max(at, self._next)  # the ideal time: lateness is not booked
            self._next = after = at + 1 / self.rate
            cuts = self._cuts
            await _sleep_until(self, loop, at)
            if self._cuts == cuts:  # no cut while it slept: the slot holds
                self._after_go = max(self._after_go, after)
                return

    def observe(self, status: int, error: str | None) -> None:
        minimum, maximum, increase, decrease, backoff = self.params
        now = self._loop.time()
        if status in backoff:
            if now - self._last_cut < self._cooldown:
                return
            self._last_cut = now
            self.rate = max(minimum, self.rate * decrease)
            self._cuts += 1  # the slots handed out at the old rate are void: the next
            self._next = self._after_go  # is the one after the latest request that went
        elif error is None and status:
            self.rate = min(maximum, self.rate + increase / self.rate)
        else:
            return
        self.history.append((now, self.rate))

    def state(self) -> Mapping[str, float]:
        """``rate_per_s``: the current pacing rate."""
        return {"rate_per_s": float(self.rate), "waiters": _waiters(self)}


def _waiters(guard: Guard) -> float:
    """Acquires waiting at a guard: its count of sleepers (``_waiting``) if it keeps one,
    else, for a guard whose lock is held only while its holder waits, the holder plus the
    tasks queued for the lock (read between tasks, on the loop's thread)."""
    waiting = getattr(guard, "_waiting", None)
    if waiting is not None:
        return float(waiting)
    lock = getattr(guard, "_lock", None)
    if lock is None:
        return 0.0
    queued = lock._waiters
    return float(lock.locked()) + float(sum(not w.done() for w in queued) if queued else 0)
