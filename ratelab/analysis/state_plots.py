"""The limiters' own state over time: ``rl.plot_state(result)``.

A run samples every guard's and the connection pool's state (``result.state``: a long
frame ``t_s``, ``guard``, ``quantity``, ``value``; see
:mod:`ratelab.client.watch.sampler`). :func:`plot_state` draws it as step lines, one panel
per guard, under the run's throughput and concurrency, all on the same time axis: the
bucket level of ``RateLimit(20)`` under the send times, the pool's queue under the
in-flight line of ``ConnectionLimit(10)``.

Matplotlib: with ``ax`` given it draws on that Axes and returns it; without, it makes the
whole figure and returns it. No global state is changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_state", "state_of"]

_TIME_LABEL = "time since start (s)"


def state_of(result: Any, guard: str | None = None) -> pd.DataFrame:
    """``result.state`` (of one ``guard``, matched by label, e.g. ``"RateLimit(20)"`` or
    ``"pool"``), sorted by time. Raises ValueError naming the guards sampled when ``guard``
    is not one of them."""
    state: pd.DataFrame = getattr(result, "state", None)
    if state is None:
        raise ValueError("plot_state needs a Result (its .state), not a records frame")
    if guard is not None:
        guards = [str(g) for g in pd.unique(state["guard"].astype(str))]
        if guard not in guards:
            raise ValueError(f"guard={guard!r} was not sampled: the run has {guards}")
        state = state[state["guard"].astype(str) == guard]
    return state.sort_values("t_s", kind="stable", ignore_index=True)


def _draw(ax: Axes, state: pd.DataFrame, *, prefix: bool) -> None:
    for (g, q), part in state.groupby(["guard", "quantity"], observed=True, sort=False):
        label = f"{g}: {q}" if prefix else str(q)
        ax.step(part["t_s"].to_numpy(), part["value"].to_numpy(), where="post", label=label,
                linewidth=1.3, gid=f"state {g} {q}")  # fmt: skip
    ax.set_xlabel(_TIME_LABEL)
    if state.empty:
        ax.text(0.5, 0.5, "no state sampled", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="upper right", fontsize="small")
        ax.set_ylim(bottom=0)


def plot_state(
    result: Any,
    *,
    ax: Axes | None = None,
    guard: str | None = None,
    figsize: tuple[float, float] | None = None,
    window_s: float = 1.0,
) -> Any:
    """The sampled state of the limiters and the pool (``result.state``) over time.

    With ``ax``: step lines of every sampled quantity (or of one ``guard``'s) on it;
    returns ``ax``. Without: a figure whose top panels are the run's throughput (sent and
    completed per ``window_s``, with the send times as ticks) and concurrency (in flight,
    waiting for the limiter and for a connection), then one panel per guard (``pool`` last),
    all sharing the time axis; returns the Figure.
    """
    state = state_of(result, guard)
    if ax is not None:
        _draw(ax, state, prefix=guard is None)
        return ax
    return _figure(result, state, figsize=figsize, window_s=window_s)


def _figure(
    result: Any, state: pd.DataFrame, *, figsize: tuple[float, float] | None, window_s: float
) -> Figure:
    import matplotlib.pyplot as plt

    from ratelab.analysis.plots import plot_concurrency, plot_throughput

    guards = [str(g) for g in pd.unique(state["guard"].astype(str))]
    guards.sort(key=lambda g: g == "pool")  # the pool under the guards
    n = 2 + max(len(guards), 1)
    fig = plt.figure(figsize=figsize or (10.0, 2.4 * n), layout="constrained")
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    plot_throughput(result, ax=axes[0], window_s=window_s, kind="both")
    sent = result.df["sent_s"].dropna().to_numpy()
    axes[0].plot(sent, np.zeros_like(sent), "|", color="0.3", markersize=8, alpha=0.5,
                 label="send times", gid="sent")  # fmt: skip
    plot_concurrency(result, ax=axes[1], waiting=True)
    if not guards:
        _draw(axes[2], state, prefix=False)
    for ax, g in zip(axes[2:], guards, strict=False):
        _draw(ax, state[state["guard"].astype(str) == g], prefix=False)
        ax.set_title(g if g != "pool" else "connection pool", fontsize="medium")
        ax.set_ylabel("state")
    for ax in axes[:-1]:
        ax.set_xlabel("")
    fig.suptitle(f"{getattr(result, 'label', 'run')}: what the limiters held", fontweight="bold")
    return fig
