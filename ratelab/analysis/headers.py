"""The server's answer over time: ``rl.plot_headers(result, "remaining")``.

A run records its responses' rate-limit headers in ``result.headers`` (a long frame:
``request_id``, ``attempt``, ``name``, ``value``). :func:`header_values` turns the headers
of one quota field (``"remaining"``, ``"limit"``, ``"reset"``) into numbers against time;
:func:`plot_headers` draws them. Matplotlib: Axes in, Axes out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["header_values", "plot_headers"]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: The IETF draft's structured ``RateLimit`` header: its parameter for each field.
_IETF_PARAM = {"remaining": "r", "reset": "t", "limit": "q"}


def _number(value: str, field: str, structured: bool) -> float:
    if structured:  # RateLimit: "default";r=50;t=30
        m = re.search(rf";\s*{_IETF_PARAM.get(field, field)}=(-?\d+(?:\.\d+)?)", value)
        return float(m.group(1)) if m else np.nan
    m = _NUMBER.search(value)
    return float(m.group(0)) if m else np.nan


def header_values(result: Any, field: str = "remaining") -> pd.DataFrame:
    """Per recorded header naming ``field`` (e.g. ``ratelimit-remaining``,
    ``x-ratelimit-remaining-requests``, ``anthropic-ratelimit-tokens-remaining``, or the
    IETF ``RateLimit`` header's parameter): ``t_s`` (headers time of the attempt, else its
    done time), ``request_id``, ``attempt``, ``name``, ``value`` (float), sorted by time."""
    headers: pd.DataFrame = result.headers
    field = field.lower()
    names = [str(n) for n in pd.unique(headers["name"].astype(str))]
    use = [n for n in names if field in n.split("-") or (n == "ratelimit" and field in _IETF_PARAM)]
    rows = headers[headers["name"].astype(str).isin(use)]
    df = result.df
    t = df["headers_s"].fillna(df["done_s"])
    times = pd.Series(t.to_numpy(), index=pd.MultiIndex.from_frame(df[["request_id", "attempt"]]))
    key = pd.MultiIndex.from_frame(rows[["request_id", "attempt"]].astype({"attempt": "int16"}))
    out = pd.DataFrame(
        {
            "t_s": times.reindex(key).to_numpy(),
            "request_id": rows["request_id"].to_numpy(),
            "attempt": rows["attempt"].to_numpy(),
            "name": rows["name"].astype(str).to_numpy(),
            "value": [
                _number(v, field, n == "ratelimit")
                for n, v in zip(rows["name"].astype(str), rows["value"], strict=True)
            ],
        }
    )
    return out.sort_values("t_s", kind="stable", ignore_index=True)


def plot_headers(result: Any, field: str = "remaining", *, ax: Axes | None = None) -> Axes:
    """A quota's ``field`` (``"remaining"`` by default; ``"limit"``, ``"reset"``) as the
    server reported it, against time on the run clock: one step line per header name."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    values = header_values(result, field)
    for name, g in values.groupby("name", sort=True):
        ax.step(g["t_s"], g["value"], where="post", marker=".", label=str(name))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(field)
    ax.set_title(f"{field}, as the server reported it")
    if values.empty:
        ax.text(0.5, 0.5, f"no '{field}' headers recorded", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
    else:
        ax.legend(loc="best", fontsize="small")
    return ax
