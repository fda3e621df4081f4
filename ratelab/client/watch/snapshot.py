"""The headline numbers of a run in progress, read from its RecordStore (any thread).

:func:`take` reads the engine's record columns (numpy; a row being written may be seen
half-stamped, which at worst moves one request between two counts for one refresh) and the
state sampler's latest values. Nothing here writes to the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Snapshot", "take"]

#: The window of "rate now": attempts completed in the last second of the run clock (in the
#: first second, those completed so far: a burst at the start reads as its size, not as the
#: rate of its first milliseconds).
RATE_WINDOW_S = 1.0


@dataclass(frozen=True)
class Snapshot:
    """A run at run-clock time ``t_s``: attempts ``done`` of ``total`` requests, the
    completion rate over the last second, how many are ``in_flight`` (sent, not done) or
    waiting for a limiter or a pooled connection, the status counts (0: no response), the
    failed attempts, and the latest sampled state (``{(guard, quantity): value}``)."""

    t_s: float
    done: int
    total: int
    rate_per_s: float
    in_flight: int
    waiting_limiter: int
    waiting_pool: int
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    state: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """Responses 429 (Too Many Requests)."""
        return self.statuses.get(429, 0)


def _started(engine: Any) -> bool:
    """The engine has opened its transport and read ``t0`` (``_send`` is bound just
    before ``t0`` is read, with no await between)."""
    return getattr(engine, "_send", None) is not None


def take(engines: list[Any]) -> Snapshot | None:
    """The snapshot of the run of ``engines`` (one engine, or the clients of a simulation,
    summed), or None before the first has started."""
    flat = [x for e in engines for x in getattr(e, "engines", [e])]  # simulate(clients=N)
    engines = [e for e in flat if _started(e)]
    if not engines:
        return None
    first = engines[0]
    t = float(first.now() - first.t0)
    done = total = in_flight = w_lim = w_pool = errors = 0
    recent = 0
    statuses: dict[int, int] = {}
    for e in engines:
        s = e.store
        n = s.n
        # in the order of a request's life, and done last: a row counted as waiting at a
        # stage had reached it before it was seen not to have passed it, so a request
        # moving on while this reads is left out of a count, never counted twice (the loop
        # runs meanwhile: numpy lets go of the GIL)
        ready = ~np.isnan(s.ready_s[:n])
        admitted = ~np.isnan(s.admitted_s[:n])
        queued = ~np.isnan(s.pool_queued_s[:n])
        acquired = ~np.isnan(s.pool_acquired_s[:n])
        sent = ~np.isnan(s.sent_s[:n])
        done_s = s.done_s[:n].copy()
        finished = ~np.isnan(done_s)
        sent &= ~finished
        waiting_pool = queued & ~acquired & ~finished
        done += int(finished.sum())
        total += int(e.experiment.requests)
        in_flight += int((sent & ~waiting_pool).sum())
        w_lim += int((ready & ~admitted & ~finished).sum())
        w_pool += int(waiting_pool.sum())
        recent += int((done_s[finished] > t - RATE_WINDOW_S).sum())
        codes, counts = np.unique(s.status[:n][finished], return_counts=True)
        for c, k in zip(codes.tolist(), counts.tolist(), strict=True):
            statuses[c] = statuses.get(c, 0) + k
        errors += int((s.error[:n][finished] >= 0).sum())
    sampler = getattr(first, "sampler", None)
    state = {} if sampler is None else sampler.latest()
    return Snapshot(
        t_s=t, done=done, total=total, rate_per_s=recent / RATE_WINDOW_S, in_flight=in_flight,
        waiting_limiter=w_lim, waiting_pool=w_pool, statuses=statuses, errors=errors,
        state=state,
    )  # fmt: skip
