"""Getting at the records: the shared first steps of :mod:`~ratelab.analysis.metrics` and
:mod:`~ratelab.analysis.plots`.

Analysis functions accept a records frame (one row per request attempt, see
:mod:`ratelab.records.store`), a :class:`~ratelab.analysis.result.Result`, or, where they
compare runs, a list of them. These helpers turn any of those into frames and numpy arrays:

* :func:`records_frame`: the one frame of a frame or a Result
* :func:`labelled_runs`: ``(label, frame, result_or_None)`` per run, for one or many
* :func:`time_column`: a time column as a float64 array (NaN where the moment did not happen)
* :func:`finite`: the finite values of an array
* :func:`ok_mask`: which attempts are *ok* (no ``error`` and ``200 <= status < 400``)

Nothing here imports a Result: a Result is recognised by its ``df`` (and ``experiment``)
attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ratelab.analysis.result import Result

__all__ = ["finite", "labelled_runs", "ok_mask", "records_frame", "time_column"]


def records_frame(data: pd.DataFrame | Result) -> pd.DataFrame:
    """The records frame of ``data`` (a DataFrame, or a Result's ``.df``).

    Raises TypeError for anything else."""
    if isinstance(data, pd.DataFrame):
        return data
    df = getattr(data, "df", None)
    if isinstance(df, pd.DataFrame):
        return df
    raise TypeError(f"expected a records DataFrame or a Result, got {type(data).__name__}")


def time_column(df: pd.DataFrame, name: str) -> np.ndarray:
    """A time column as a float64 numpy array (no copy when already float64)."""
    return df[name].to_numpy(dtype=np.float64)


def finite(a: np.ndarray) -> np.ndarray:
    """The finite values of ``a`` (NaN and infinities dropped), in order."""
    return a[np.isfinite(a)]


def ok_mask(df: pd.DataFrame) -> np.ndarray:
    """True for attempts without an exception and with 200 <= status < 400."""
    status = df["status"].to_numpy()
    return df["error"].isna().to_numpy() & (status >= 200) & (status < 400)


def labelled_runs(data: Any) -> list[tuple[str, pd.DataFrame, Any]]:
    """``(label, frame, result_or_None)`` for a frame, a Result or an iterable of them.

    A Result's label is its ``label``; a bare frame is ``"run"``, the i-th frame of a list
    ``"run i"``. Nested iterables are flattened. Raises TypeError for anything else."""
    if isinstance(data, pd.DataFrame):
        return [("run", data, None)]
    if hasattr(data, "df") and hasattr(data, "experiment"):
        return [(str(data.label), data.df, data)]
    if isinstance(data, Iterable) and not isinstance(data, str | bytes):
        out: list[tuple[str, pd.DataFrame, Any]] = []
        for i, item in enumerate(data):
            if isinstance(item, pd.DataFrame):
                out.append((f"run {i}", item, None))
            else:
                out.extend(labelled_runs(item))
        return out
    raise TypeError(f"expected a records DataFrame, a Result or a list, got {type(data).__name__}")
