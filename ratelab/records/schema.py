"""The record schema: one row per request attempt, its columns, dtypes and units.

All times are seconds on the engine's clock (``time.monotonic``, or ``loop.time()`` on a
loop with a clock of its own, such as ``ratelab.testing``'s virtual clock), relative to the
run's start (``t0``). A time that did not happen is NaN (e.g. ``pool_queued_s`` when the
request never waited for a connection, ``done_s`` for a request that never ran).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "ERROR_CANCELLED", "LATER_COLUMNS", "TIME_COLUMNS", "empty_frame"]

#: Every time column, in the order a request lives through them.
TIME_COLUMNS: tuple[str, ...] = (
    "scheduled_s",  # when it was meant to go: enqueue time (closed loop) or intended arrival (open)
    "dequeued_s",  # a worker took it from the queue (retries: the attempt began)
    "ready_s",  # think time over (== dequeued_s without think time): guards start here
    "admitted_s",  # passed every client-side guard (rate limiter, semaphore)
    "pool_queued_s",  # began waiting for a pooled connection (NaN: it did not wait)
    "pool_acquired_s",  # got the pooled connection (NaN: it did not wait)
    "sent_s",  # the request went out on a connection (after any pool wait)
    "headers_s",  # response headers arrived
    "done_s",  # body read, or the attempt failed / was cancelled
)

#: column name -> (dtype, unit, meaning). The DataFrame has exactly these columns, in order.
COLUMNS: dict[str, tuple[str, str, str]] = {
    "request_id": ("int64", "", "0-based id of the logical request"),
    "attempt": ("int16", "", "1 for the first attempt, 2.. for retries"),
    "worker": ("int32", "", "worker that ran it (-1: never dequeued)"),
    "endpoint": ("category", "", "path requested, e.g. /get"),
    "method": ("category", "", "HTTP method"),
    **{c: ("float64", "s", "time on the run clock") for c in TIME_COLUMNS},
    "status": ("int16", "", "HTTP status; 0 when no response arrived"),
    "error": ("category", "", "exception class name on failure, else missing"),
    "bytes": ("int64", "B", "response body size (0 without a body)"),
    "cost": ("float64", "", "the request's cost (whole tokens, sent as X-Ratelab-Cost); NaN: none"),
}

#: Columns added after the first file format: a file without them reads back with this
#: fill value (a run before ``Experiment(cost=)`` had no costs).
LATER_COLUMNS: dict[str, float] = {"cost": float("nan")}

#: The ``error`` of requests that never finished because the run was interrupted.
ERROR_CANCELLED = "CancelledError"


def empty_frame() -> pd.DataFrame:
    """A zero-row frame with the documented columns and dtypes."""
    return pd.DataFrame(
        {
            name: pd.Categorical([], categories=[]) if dtype == "category" else np.zeros(0, dtype)
            for name, (dtype, _unit, _meaning) in COLUMNS.items()
        }
    )
