"""``rl.HeaderPacing``: a client that listens to the server's rate-limit headers.

After every response :class:`HeaderPacingGuard` reads the quotas the response announces, in
any header style (:func:`ratelab.protocol.header_reading.read_headers`: IETF
``RateLimit``/``RateLimit-Policy``, ``RateLimit-Remaining``/``-Reset``, OpenAI, Anthropic,
GitHub), and spreads what is left of each over the time to its reset:

- a requests quota with ``remaining`` R and ``reset_s`` T spaces requests
  ``T / (R * (1 - safety))`` apart;
- a tokens quota spaces them by their cost: ``cost * T / (R * (1 - safety))``;
- the tightest quota sets the spacing (``concurrent`` quotas and quotas without a reset
  are not paced); a quota with nothing usable left pauses every request until its reset.

A refusal (429 or 503) with a ``Retry-After`` (:func:`~ratelab.protocol.header_reading.
retry_after_s`, ``X-Retry-After-Ms`` preferred) pauses EVERY worker until then, not only the
one refused (that one also follows its ``Retry``, if any). Until the first response with
quotas arrives nothing is held back. Times are booked at the ideal moment (the spacing is
counted from when a request was due, not from when its timer fired), as in the other
pacing guards. Reset dates (GitHub, Anthropic) are read against
:func:`ratelab.protocol.wall_clock.epoch_s` of the loop, so a virtual clock works too.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

from ratelab.client.guards import Guard
from ratelab.client.loops import timer_delay_s
from ratelab.protocol.header_reading import read_headers, retry_after_s
from ratelab.protocol.wall_clock import epoch_s

__all__ = ["HeaderPacingGuard"]

#: Statuses after which a ``Retry-After`` pauses every worker.
REFUSED = frozenset({429, 503})


class HeaderPacingGuard(Guard):
    """Paces requests by the remaining quota over the time to reset; pauses all workers
    after a refusal for its Retry-After. ``per_request_s`` / ``per_token_s`` are the
    current spacings, ``paused_until`` the end of the current pause (loop clock)."""

    __slots__ = ("_lock", "_loop", "_next", "_usable", "paused_until", "per_request_s",
                 "per_token_s")  # fmt: skip

    def __init__(self, *, safety: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._usable = 1.0 - safety
        self._next = -math.inf  # the ideal time the next request may go
        self.per_request_s = 0.0
        self.per_token_s = 0.0
        self.paused_until = -math.inf

    async def acquire(self, endpoint: str, cost: float | None = None) -> None:
        loop = self._loop
        at = loop.time()  # arrival: the earliest ideal time
        async with self._lock:
            while True:
                at = max(at, self._next, self.paused_until)
                now = loop.time()
                if at <= now:
                    break
                await asyncio.sleep(timer_delay_s(loop, at - now))
                # a response that came meanwhile may have paused everyone: ask again
            gap = self.per_request_s
            if cost is not None and self.per_token_s:
                gap = max(gap, cost * self.per_token_s)
            self._next = at + gap  # from the ideal time: a late timer's lateness carries

    def observe(self, status: int, error: str | None, headers: Mapping[str, str] | None) -> None:
        if headers is None:
            return
        loop = self._loop
        now = loop.time()
        wall = epoch_s(loop)
        if status in REFUSED:
            wait = retry_after_s(headers, now_epoch_s=wall)
            if wait is not None:
                self.paused_until = max(self.paused_until, now + wait)
        per_request = per_token = None
        for q in read_headers(headers, now_epoch_s=wall):
            reset = q.reset_s
            if reset is None or not math.isfinite(reset) or q.unit == "concurrent":
                continue
            usable = q.remaining * self._usable
            if not usable >= 1:  # nothing (or not one whole request) left: wait for the reset
                self.paused_until = max(self.paused_until, now + reset)
                continue
            spacing = reset / usable
            if q.unit == "tokens":
                per_token = spacing if per_token is None else max(per_token, spacing)
            else:
                per_request = spacing if per_request is None else max(per_request, spacing)
        if per_request is not None or per_token is not None:  # the latest news replaces
            self.per_request_s = per_request or 0.0
            self.per_token_s = per_token or 0.0
