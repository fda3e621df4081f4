"""The LocalServer's request log: one row per request it saw, and that log as a DataFrame.

The server thread appends a tuple per request (:meth:`RequestLog.append`); any thread reads a
snapshot. :meth:`RequestLog.frame` turns it into the frame :meth:`LocalServer.log
<ratelab.server.local.LocalServer.log>` returns, with arrival and departure on the
``time.monotonic()`` clock (or relative to a given ``t0``).
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd

from ratelab.errors import ConfigError

__all__ = ["DECISIONS", "LOG_COLUMNS", "RequestLog", "Row"]

#: The log's ``decision`` values: ``"bad_request"`` is a request whose ``X-Ratelab-Cost``
#: header could not be read (answered 400 before any policy).
DECISIONS = ("ok", "rate_limited", "overloaded", "fault", "bad_request")
LOG_COLUMNS = ("run", "request_id", "attempt", "method", "path", "arrival_s", "departure_s",
               "status", "decision", "cost_declared", "cost_actual")  # fmt: skip

#: One request: (run, request_id, attempt, method, path, arrival_s, departure_s, status,
#: decision, cost_declared, cost_actual), in the order of :data:`LOG_COLUMNS`.
#: ``cost_declared``: the request's ``X-Ratelab-Cost`` (1 without it, -1 if unreadable);
#: ``cost_actual``: what its response used (the declared cost, or a drawn part of it with
#: the server's ``actual_cost``; 0 for a request refused or answered 400: charged nothing).
Row = tuple[str, int, int, str, str, float, float, int, str, int, int]


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(name, value, "must be a finite number (a time.monotonic() reading)")
    return float(value)


class RequestLog:
    """Rows appended by the server thread (one tuple per request), read by any thread."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rows: list[Row] = []

    def append(self, row: Row) -> None:
        with self.cond:
            self.rows.append(row)
            self.cond.notify_all()

    def snapshot(self) -> list[Row]:
        with self.cond:
            return list(self.rows)

    def clear(self) -> None:
        with self.cond:
            self.rows.clear()

    def wait_for(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` rows exist; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.rows) >= n, timeout)

    def frame(
        self, *, t0: float | None = None, run: str | Collection[str] | None = None
    ) -> pd.DataFrame:
        """A snapshot as a DataFrame with the columns :data:`LOG_COLUMNS`. With ``t0`` (a
        ``time.monotonic()`` reading) times are relative to it; with ``run`` (a run token
        or several), only those runs' rows."""
        shift = 0.0 if t0 is None else _check_real("t0", t0)
        rows = self.snapshot()
        if run is not None:
            many = not isinstance(run, str) and isinstance(run, Collection)
            runs = set(run) if many else {run}
            if not all(isinstance(r, str) for r in runs):
                raise ConfigError("run", run, "must be a run token (str), several, or None")
            rows = [r for r in rows if r[0] in runs]
        cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 11
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
                "cost_declared": np.array(cols[9], dtype=np.int64),
                "cost_actual": np.array(cols[10], dtype=np.int64),
            },
            columns=list(LOG_COLUMNS),
        )
