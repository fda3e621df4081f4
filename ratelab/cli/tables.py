"""Plain-text tables for the terminal: :func:`format_table` and :func:`runs_table`.

Numbers are written short (:func:`format_number`: thousands separators, 3 significant
digits below 100, ``-`` when undefined); :func:`fixed` gives a column fixed decimals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ratelab.analysis.result import Result

__all__ = ["RUN_HEADERS", "fixed", "format_number", "format_table", "runs_table"]


def format_number(value: Any, digits: int = 3) -> str:
    """A table cell: ``-`` for None or a non-finite float, ``yes``/``no`` for a bool, an int
    with thousands separators, a float to ``digits`` significant digits (none below 5e-4,
    no decimals from 100 up); anything else as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) < 5e-4:
            return "0"
        return f"{value:.{digits}g}"
    return str(value)


def fixed(value: float, decimals: int = 1) -> str:
    """A number with fixed decimals (so a column lines up), ``-`` when undefined."""
    x = float(value)
    return f"{x:,.{decimals}f}" if math.isfinite(x) else "-"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[format_number(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


RUN_HEADERS = (
    "run",
    "requests",
    "rate/s",
    "steady/s",
    "peak in flight",
    "p50 ms",
    "p95 ms",
    "limiter wait ms",
    "pool wait ms",
    "errors",
)


def runs_table(results: Sequence[Result]) -> str:
    """One row per run: requests, achieved and steady rate (``steady_rate_per_s``: after
    the first period of every rate limit, so aiolimiter's initial burst is not in it), peak
    in flight, p50/p95 latency, mean limiter and pool wait, errors."""
    import numpy as np

    from ratelab.analysis.metrics import summary

    table = summary(list(results))
    rows = []
    for res, (_, s) in zip(results, table.iterrows(), strict=True):
        lat = res.latency() * 1e3
        p50, p95 = np.quantile(lat, [0.5, 0.95]).tolist() if lat.size else (math.nan, math.nan)
        label = res.label + (" (interrupted)" if res.interrupted else "")
        rows.append(
            (
                label,
                int(s["requests"]),
                fixed(s["rate_per_s"]),
                fixed(s["steady_rate_per_s"]),
                int(s["peak_in_flight"]),
                fixed(p50),
                fixed(p95),
                fixed(s["limiter_wait_mean_s"] * 1e3),
                fixed(s["pool_wait_mean_s"] * 1e3),
                int(s["errors"]),
            )
        )
    return format_table(RUN_HEADERS, rows)
