"""Guards: the client-side gates a request passes before it is sent, one per strategy part.

A :class:`Guard` is built for one run inside the running loop (``Strategy.guard()``); the
engine awaits ``acquire`` before the attempt, calls ``release`` after it whatever happened,
shows it every outcome with ``observe``, and awaits ``aclose`` once when the run ends.

- :class:`LimiterGuard` (``RateLimit``): aiolimiter's ``AsyncLimiter``;
- :class:`SemaphoreGuard` (``Concurrency``): an ``asyncio.Semaphore`` held for the attempt;

and small, exact limiters that aiolimiter does not offer. Each reads time only from
``loop.time()`` and serves waiters in FIFO order (an ``asyncio.Lock`` is fair), so a
controlled clock gives exact, repeatable schedules. Waits are rounded up to the loop's timer
resolution (:func:`ratelab.client.loops.timer_delay_s`), so on uvloop a sub-millisecond wait
does not turn into a busy loop.

- :class:`TokenBucketGuard`: a bucket of ``burst`` tokens, full at the start, refilled at
  ``rate_per_s``; each request takes one token or waits for it.
- :class:`SlidingWindowGuard`: at most ``limit`` admissions in any window of ``window_s``
  (an exact sliding log of admission times).
- :class:`AdaptiveGuard`: AIMD pacing; requests are spaced ``1 / rate`` apart, the rate is
  cut multiplicatively on 429/503 and grows additively with every success.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping

from aiolimiter import AsyncLimiter

from ratelab.client.loops import timer_delay_s, timer_resolution_s

__all__ = [
    "AdaptiveGuard",
    "Guard",
    "LimiterGuard",
    "SemaphoreGuard",
    "SlidingWindowGuard",
    "TokenBucketGuard",
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

    ``await acquire(endpoint)``
        After the think time or retry backoff, before the request is sent; may wait. The
        strategy's guards are acquired in the order written (``a + b``: ``a`` first). The
        wait is the row's ``admitted_s - ready_s``. Raising fails the attempt (an error
        row named after the exception) without sending it; a cancelled run cancels it.
    ``release(endpoint)``
        Once the attempt is over, whatever happened (response read, error, timeout,
        cancellation), exactly once for each ``acquire`` that returned, and never for one
        that raised or was cancelled. Plain (not async): it must not wait.
    ``observe(status, error)``
        After ``release``, on every guard of the strategy, with the attempt's outcome:
        the HTTP ``status`` (0 when no response came) and ``error`` (the exception's class
        name, or None). Not called for an attempt cancelled by the end of the run. Plain.
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
    """``RateLimit``: aiolimiter's ``AsyncLimiter(max_rate, period_s)`` before each request."""

    __slots__ = ("_limiter",)

    def __init__(self, max_rate: float, period_s: float) -> None:
        self._limiter = _AsyncLimiter(max_rate, period_s)

    async def acquire(self, endpoint: str) -> None:
        await self._limiter.acquire()

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

    def state(self) -> Mapping[str, float]:
        """``holders``: attempts holding the semaphore; ``waiters``: waiting for it."""
        sem = self._semaphore
        waiters = sem._waiters
        waiting = sum(not w.done() for w in waiters) if waiters else 0
        return {"holders": float(self._n - sem._value), "waiters": float(waiting)}


class TokenBucketGuard(Guard):
    __slots__ = ("_burst", "_last", "_lock", "_loop", "_rate", "_tokens")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._loop.time()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    async def acquire(self, endpoint: str) -> None:
        async with self._lock:
            self._refill()
            while self._tokens < 1:
                await asyncio.sleep(timer_delay_s(self._loop, (1 - self._tokens) / self._rate))
                self._refill()
            self._tokens -= 1

    def state(self) -> Mapping[str, float]:
        """``tokens``: the bucket's tokens now (refilled to now; a bucket booked ahead is
        counted back to now, at least 0); ``waiters``."""
        elapsed = self._loop.time() - self._last
        tokens = min(self._burst, max(0.0, self._tokens + elapsed * self._rate))
        return {"tokens": float(tokens), "waiters": _waiters(self)}


class SlidingWindowGuard(Guard):
    __slots__ = ("_limit", "_lock", "_log", "_loop", "_window")

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window = window_s
        self._log: deque[float] = deque()
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()

    async def acquire(self, endpoint: str) -> None:
        async with self._lock:
            log, now = self._log, self._loop.time()
            while True:
                while log and log[0] <= now - self._window:
                    log.popleft()
                if len(log) < self._limit:
                    log.append(now)
                    return
                await asyncio.sleep(timer_delay_s(self._loop, log[0] + self._window - now))
                now = self._loop.time()

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
    ``(time, rate)`` at every change, on the loop clock."""

    __slots__ = ("_cooldown", "_last_cut", "_lock", "_loop", "_next", "history", "params", "rate")

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
        self._next = self._loop.time()
        self._last_cut = -float("inf")
        self._lock = asyncio.Lock()
        self.history: list[tuple[float, float]] = [(self._next, start)]

    async def acquire(self, endpoint: str) -> None:
        async with self._lock:
            now = self._loop.time()
            if self._next > now:
                await asyncio.sleep(timer_delay_s(self._loop, self._next - now))
                now = self._loop.time()
            self._next = max(now, self._next) + 1 / self.rate

    def observe(self, status: int, error: str | None) -> None:
        minimum, maximum, increase, decrease, backoff = self.params
        now = self._loop.time()
        if status in backoff:
            if now - self._last_cut < self._cooldown:
                return
            self._last_cut = now
            self.rate = max(minimum, self.rate * decrease)
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
