"""A records frame from a few given columns, for testing analysis and plots without a run.

    from ratelab.testing import make_frame

    df = make_frame(sent_s=[0.0, 0.5], done_s=[1.0, 1.2], status=[200, 429])
    rl.summary(df)

Every column of the schema (:data:`ratelab.records.schema.COLUMNS`) is there with its dtype;
columns not given get defaults: request ids 0..n-1, attempt 1, worker 0, ``"/get"``,
``"GET"``, NaN times, status 200, no error, 0 bytes, no cost (NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ratelab.errors import ConfigError
from ratelab.records.schema import COLUMNS, TIME_COLUMNS, empty_frame

__all__ = ["make_frame"]


def make_frame(**columns: Sequence[Any]) -> pd.DataFrame:
    """A records frame with the schema's columns and dtypes, filled from equal-length lists."""
    if not columns:
        return empty_frame()
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown:
        raise ConfigError(
            unknown[0], columns[unknown[0]], f"is not a column; valid: {list(COLUMNS)}"
        )
    n = len(next(iter(columns.values())))
    for name, values in columns.items():
        if len(values) != n:
            raise ConfigError(name, values, f"must have {n} values, as the first column has")
    defaults: dict[str, Any] = {
        "request_id": np.arange(n),
        "attempt": np.ones(n),
        "worker": np.zeros(n),
        "endpoint": ["/get"] * n,
        "method": ["GET"] * n,
        **dict.fromkeys(TIME_COLUMNS, np.full(n, np.nan)),
        "status": np.full(n, 200),
        "error": [None] * n,
        "bytes": np.zeros(n),
        "cost": np.full(n, np.nan),
    }
    ref = empty_frame()
    data: dict[str, Any] = {}
    for c in ref.columns:
        values = columns.get(c, defaults[c])
        if isinstance(ref[c].dtype, pd.CategoricalDtype):
            cats = sorted({v for v in values if v is not None})
            data[c] = pd.Categorical(values, categories=pd.Index(cats, dtype=object))
        else:
            data[c] = np.asarray(values, dtype=float).astype(ref[c].dtype)
    return pd.DataFrame(data)
