"""The columnar store that fills the record schema (one row per request attempt).

The store keeps one preallocated numpy array per column and writes into it by row index, so
recording a request costs a few array stores: no dict, tuple or object per request. It grows
by doubling when retries add rows. ``to_frame`` turns it into the documented DataFrame.

All times are seconds on the engine's clock (``time.monotonic``, or ``loop.time()`` on a
loop with a clock of its own, such as the tests' virtual clock), relative to the run's start
(``t0``). A time that did not happen is NaN (e.g. ``pool_queued_s`` when the request never
waited for a connection, ``done_s`` for a request that never ran).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ratelab.records.schema import TIME_COLUMNS

__all__ = ["RecordStore"]


class RecordStore:
    """Preallocated columns, written by row index from the engine's hot path.

    The engine owns the row numbering: row ``i < requests`` is attempt 1 of request ``i``;
    retries get rows from :meth:`new_row`.
    """

    def __init__(self, capacity: int, *, endpoints: Sequence[str], methods: Sequence[str]) -> None:
        self.endpoints = list(endpoints)
        self.methods = list(methods)
        self.errors: list[str] = []  # categories of the error column, in first-seen order
        self._error_codes: dict[str, int] = {}
        self.n = 0  # rows in use
        #: Odd while the columns are being replaced by larger ones (a sequence lock for a
        #: reader in another thread: ratelab.client.watch.snapshot).
        self.generation = 0
        #: Recorded response headers: (row, lower-case name, value), see :meth:`headers_frame`.
        self.header_rows: list[tuple[int, str, str]] = []
        self._alloc(max(capacity, 1))

    def _alloc(self, capacity: int) -> None:
        self.capacity = capacity
        self.request_id = np.zeros(capacity, np.int64)
        self.attempt = np.ones(capacity, np.int16)
        self.worker = np.full(capacity, -1, np.int32)
        self.endpoint = np.zeros(capacity, np.int32)  # code into self.endpoints
        self.method = np.zeros(capacity, np.int32)  # code into self.methods
        for c in TIME_COLUMNS:
            setattr(self, c, np.full(capacity, np.nan))
        self.status = np.zeros(capacity, np.int16)
        self.error = np.full(capacity, -1, np.int32)  # code into self.errors, -1 = none
        self.bytes = np.zeros(capacity, np.int64)
        self.cost = np.full(capacity, np.nan)  # the request's cost (NaN: the run has none)

    def _grow(self) -> None:
        old = {name: getattr(self, name) for name in self._array_names()}
        n = self.capacity
        self.generation += 1  # odd while the columns are replaced (a live view's check)
        self._alloc(n * 2)
        for name, arr in old.items():
            getattr(self, name)[:n] = arr
        self.generation += 1

    @staticmethod
    def _array_names() -> tuple[str, ...]:
        return ("request_id", "attempt", "worker", "endpoint", "method", *TIME_COLUMNS,
                "status", "error", "bytes", "cost")  # fmt: skip

    def add_requests(self, request_ids: np.ndarray, endpoint_codes: np.ndarray,
                     method_codes: np.ndarray) -> None:  # fmt: skip
        """Reserve rows ``n .. n+len(ids)`` for first attempts (vectorised)."""
        k = len(request_ids)
        while self.n + k > self.capacity:
            self._grow()
        s = slice(self.n, self.n + k)
        self.request_id[s] = request_ids
        self.endpoint[s] = endpoint_codes
        self.method[s] = method_codes
        self.n += k

    def new_row(self, like: int, attempt: int) -> int:
        """A fresh row for another attempt of the request in row ``like``; returns its index."""
        if self.n >= self.capacity:
            self._grow()
        i = self.n
        self.n += 1
        self.request_id[i] = self.request_id[like]
        self.endpoint[i] = self.endpoint[like]
        self.method[i] = self.method[like]
        self.attempt[i] = attempt
        self.scheduled_s[i] = self.scheduled_s[like]
        self.cost[i] = self.cost[like]
        return i

    def error_code(self, name: str) -> int:
        """The code for an error name (adds the category on first use)."""
        code = self._error_codes.get(name)
        if code is None:
            code = self._error_codes[name] = len(self.errors)
            self.errors.append(name)
        return code

    def headers_frame(self) -> pd.DataFrame:
        """The recorded response headers as a long frame: ``request_id``, ``attempt``,
        ``name`` (lower case), ``value`` (str), sorted like :meth:`to_frame`."""
        rows = self.header_rows
        idx = np.fromiter((r for r, _, _ in rows), np.int64, len(rows))
        df = pd.DataFrame(
            {
                "request_id": self.request_id[idx],
                "attempt": self.attempt[idx],
                "name": pd.Categorical([n for _, n, _ in rows]),
                "value": pd.Series([v for _, _, v in rows], dtype=object),
            }
        )
        return df.sort_values(["request_id", "attempt"], kind="stable", ignore_index=True)

    def to_frame(self) -> pd.DataFrame:
        """The rows recorded so far as the documented DataFrame (copies the data once: the
        DataFrame constructor copies the arrays it is given)."""
        n = self.n
        data: dict[str, object] = {
            "request_id": self.request_id[:n],
            "attempt": self.attempt[:n],
            "worker": self.worker[:n],
            "endpoint": pd.Categorical.from_codes(self.endpoint[:n], categories=self.endpoints),
            "method": pd.Categorical.from_codes(self.method[:n], categories=self.methods),
        }
        for c in TIME_COLUMNS:
            data[c] = getattr(self, c)[:n]
        data["status"] = self.status[:n]
        data["error"] = pd.Categorical.from_codes(self.error[:n], categories=self.errors or [])
        data["bytes"] = self.bytes[:n]
        data["cost"] = self.cost[:n]
        df = pd.DataFrame(data, copy=True)
        return df.sort_values(["request_id", "attempt"], kind="stable", ignore_index=True)
