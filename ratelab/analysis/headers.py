"""The server's answer over time: ``rl.plot_headers(result, "remaining")``.

A run records its responses' rate-limit headers in ``result.headers`` (a long frame:
``request_id``, ``attempt``, ``name``, ``value``). :func:`header_values` reads every quota
each response announced, in any header style a server speaks (the IETF draft's
``RateLimit``/``RateLimit-Policy`` with one Item per quota, ``RateLimit-Remaining``/``-Reset``
(draft 06), OpenAI's requests and tokens, Anthropic's, GitHub's), with the reader the client
uses (:func:`ratelab.protocol.header_reading.read_headers`), and gives one field of each
(``"remaining"``, ``"limit"``, ``"used"``, ``"reset"``) as numbers against time;
:func:`plot_headers` draws them, one line per quota. Matplotlib: Axes in, Axes out.

Resets given as a moment (GitHub's epoch seconds, Anthropic's dates) are turned into seconds
from the response, read against the run's wall clock: a simulation's (``rl.simulate`` starts
its wall clock at :data:`SIMULATION_EPOCH_S`) or, for a real run, ``meta["started_at"]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from ratelab.errors import ConfigError
from ratelab.protocol.header_reading import read_headers

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["FIELDS", "SIMULATION_EPOCH_S", "header_values", "plot_headers"]

#: What :func:`header_values` can read of each quota.
FIELDS = ("remaining", "limit", "used", "reset")
#: The wall clock a simulation starts at (virtual time 0): 2026-01-01T00:00:00Z. The same
#: as ``ratelab.simulation.runner.SIMULATION_EPOCH_S`` (a test checks), repeated here as
#: analysis/ does not import the runners.
SIMULATION_EPOCH_S = 1_767_225_600.0

_COLUMNS = ["t_s", "request_id", "attempt", "name", "quota", "unit", "limit", "value"]
#: The styles that give a reset as a moment, not a delay.
_ABSOLUTE = frozenset({"github", "anthropic"})
_GITHUB = frozenset(f"x-ratelimit-{f}" for f in ("limit", "remaining", "used", "reset", "resource"))


def _style(name: str) -> str | None:
    """The header style a (lower-case) header name belongs to, or None."""
    if name in ("ratelimit", "ratelimit-policy"):
        return "ietf"
    if name.startswith("ratelimit-"):
        return "ietf-06"
    if name.startswith("anthropic-ratelimit-"):
        return "anthropic"
    if name in _GITHUB:
        return "github"
    if name.startswith("x-ratelimit-") and name.endswith(("-requests", "-tokens")):
        return "openai"
    return None


def _label(style: str, quota: str, field: str) -> str:
    """A line's label: the header (and, where several quotas share one, the quota) it
    comes from."""
    f = "remaining" if field == "used" else field
    if style == "ietf":
        return f'ratelimit "{quota}"'
    if style == "ietf-06":
        return f"ratelimit-{f}"
    if style == "openai":
        return f"x-ratelimit-{f}-{quota}"
    if style == "anthropic":
        return f"anthropic-ratelimit-{quota}-{f}"
    return f"x-ratelimit-{f} ({quota})"  # github: the resource's name


def _epoch_at_t0(result: Any) -> float:
    """The wall clock (epoch seconds) at the run's time 0."""
    meta: Mapping[str, Any] = getattr(result, "meta", None) or {}
    if meta.get("clock") == "virtual":
        return SIMULATION_EPOCH_S + float(meta.get("t0_monotonic", 0.0) or 0.0)
    started = meta.get("started_at")
    if isinstance(started, str):
        try:
            return datetime.fromisoformat(started).timestamp()
        except ValueError:
            pass
    return math.nan


def _field_value(field: str, limit: float, remaining: float, reset_s: float | None) -> float:
    if field == "remaining":
        return remaining
    if field == "limit":
        return limit
    if field == "used":
        return limit - remaining
    return math.nan if reset_s is None else reset_s


def header_values(result: Any, field: str = "remaining") -> pd.DataFrame:
    """Every quota every recorded response announced, one row each: ``t_s`` (headers time
    of the attempt, else its done time), ``request_id``, ``attempt``, ``name`` (a label:
    the header the quota came in, e.g. ``x-ratelimit-remaining-tokens``,
    ``ratelimit "requests"``, ``x-ratelimit-remaining (core)``), ``quota`` (its name, as
    :func:`~ratelab.protocol.header_reading.read_headers` gives it), ``unit``, ``limit``
    (NaN if not announced) and ``value``: the quota's ``field`` (``"remaining"``,
    ``"limit"``, ``"used"`` = limit - remaining, ``"reset"`` = seconds from the response
    until the quota is whole again), sorted by time."""
    if field not in FIELDS:
        raise ConfigError("field", field, f"must be one of {', '.join(map(repr, FIELDS))}")
    headers: pd.DataFrame = result.headers
    # per attempt, per style: the attempt's headers of that style
    groups: dict[tuple[int, int, str], dict[str, str]] = {}
    names = headers["name"].astype(str).str.lower().to_numpy()
    for rid, att, name, value in zip(
        headers["request_id"].to_numpy(), headers["attempt"].to_numpy(), names,
        headers["value"].astype(str).to_numpy(), strict=True,
    ):  # fmt: skip
        style = _style(name)
        if style is not None:
            groups.setdefault((int(rid), int(att), style), {})[name] = value
    df = result.df
    t = df["headers_s"].fillna(df["done_s"]).to_numpy(dtype=float)
    when = dict(zip(zip(df["request_id"].to_numpy().tolist(), df["attempt"].to_numpy().tolist(),
                        strict=True), t.tolist(), strict=True))  # fmt: skip
    epoch0 = _epoch_at_t0(result)
    rows: list[tuple[Any, ...]] = []
    for (rid, att, style), h in groups.items():
        t_s = when.get((rid, att), math.nan)
        now = epoch0 + t_s
        unknown = not math.isfinite(now)  # an absolute reset cannot be read: NaN
        for q in read_headers(h, now_epoch_s=0.0 if unknown else now):
            if unknown and field == "reset" and style in _ABSOLUTE:
                value = math.nan
            else:
                value = _field_value(field, q.limit, q.remaining, q.reset_s)
            rows.append((t_s, rid, att, _label(style, q.name, field), q.name, q.unit, q.limit,
                         value))  # fmt: skip
    out = pd.DataFrame(rows, columns=_COLUMNS)
    out = out.astype({"t_s": float, "request_id": "int64", "attempt": "int64", "limit": float,
                      "value": float, "name": str, "quota": str, "unit": str})  # fmt: skip
    return out.sort_values(["t_s", "request_id", "attempt"], kind="stable", ignore_index=True)


def plot_headers(
    result: Any, field: str = "remaining", *, relative: bool = False, ax: Axes | None = None
) -> Axes:
    """A field of every quota (``"remaining"`` by default; ``"limit"``, ``"used"``,
    ``"reset"``) as the server reported it, against time on the run clock: one step line
    per quota (:func:`header_values`). Quotas counted in other units than the first
    (tokens beside requests) go on a second y axis on the right, dashed; ``relative=True``
    draws ``value / limit`` instead (the share of each quota), all on one axis."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    values = header_values(result, field)
    if relative:
        values = values.assign(value=values["value"] / values["limit"].where(values["limit"] > 0))
    units = list(dict.fromkeys(values["unit"])) if field != "reset" and not relative else []
    first_unit = units[0] if units else None
    other: Axes | None = ax.twinx() if len(units) > 1 else None
    lines = []
    for i, ((name, unit), g) in enumerate(values.groupby(["name", "unit"], sort=False)):
        on = ax if other is None or unit == first_unit else other
        style = "-" if on is ax else "--"  # colours from one cycle over both axes
        (line,) = on.step(g["t_s"], g["value"], where="post", marker=".", linestyle=style,
                          color=f"C{i % 10}", label=str(name))  # fmt: skip
        lines.append(line)
    ylabel = f"{field} (share of the limit)" if relative else field
    if field == "reset":
        ylabel = "reset (s)"
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"{ylabel} ({first_unit})" if other is not None else ylabel)
    if other is not None:
        other.set_ylabel(f"{field} ({', '.join(str(u) for u in units[1:])})")
    ax.set_title(f"{field}, as the server reported it")
    if values.empty:
        ax.text(0.5, 0.5, f"no '{field}' headers recorded", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
    else:
        ax.legend(handles=lines, loc="best", fontsize="small")
    return ax
