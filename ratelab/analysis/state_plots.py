"""The limiters' own state over time: ``rl.plot_state(result)``.

A run samples every guard's and the connection pool's state (``result.state``: a long
frame ``t_s``, ``guard``, ``quantity``, ``value``; see
:mod:`ratelab.client.watch.sampler`). :func:`plot_state` draws it as step lines, one panel
per guard, under the run's throughput and concurrency, all on the same time axis: the
bucket level of ``RateLimit(20)`` under the send times, the pool's queue under the
in-flight line of ``ConnectionLimit(10)``.

A multi-process run (``rl.run(exp, processes=N)``: ``result.state`` has a ``process``
column) is drawn one line per process and quantity, the colour naming the process and the
line style the quantity; never summed. Decided: each process's guards and pool are its
own (``RateLimit(20)`` in each of 4 processes is 4 buckets, each bounded by 20, not one of
80: a sum would hide the bound each one keeps), and the processes sample on their own
grids, so a sum would mix values of different instants. The fleet's totals (sent per
second, in flight, waiting) are the top panels, from the records. A ``SharedRateLimit``
is one count in Redis that no process holds: its guard reports no state (the count would
cost a Redis call per sample), so each process shows only its own pool; its total is
what the throughput panel shows.

Matplotlib: with ``ax`` given it draws on that Axes and returns it; without, it makes the
whole figure and returns it. No global state is changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ratelab.analysis.files import STATE_PROCESS_COLUMN

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_state", "state_of"]

_TIME_LABEL = "time since start (s)"
#: The column of a multi-process run's state naming the process (as its records').
PROCESS_COLUMN = STATE_PROCESS_COLUMN[0]
#: Line styles of a multi-process run's quantities (the colour is the process's).
_STYLES = ("-", "--", ":", "-.")


def state_of(result: Any, guard: str | None = None, *, process: int | None = None) -> pd.DataFrame:
    """``result.state`` (of one ``guard``, matched by label, e.g. ``"RateLimit(20)"`` or
    ``"pool"``; of one ``process`` of a multi-process run), sorted by time. Raises
    ValueError naming the guards (processes) sampled when ``guard`` (``process``) is not
    one of them."""
    state: pd.DataFrame = getattr(result, "state", None)
    if state is None:
        raise ValueError("plot_state needs a Result (its .state), not a records frame")
    if guard is not None:
        guards = [str(g) for g in pd.unique(state["guard"].astype(str))]
        if guard not in guards:
            raise ValueError(f"guard={guard!r} was not sampled: the run has {guards}")
        state = state[state["guard"].astype(str) == guard]
    if process is not None:
        if PROCESS_COLUMN not in state.columns:
            raise ValueError(f"process={process!r}: the run was not split across processes")
        sampled = sorted(int(k) for k in pd.unique(state[PROCESS_COLUMN]))
        if isinstance(process, bool) or process not in sampled:
            raise ValueError(f"process={process!r} has no samples: the run has {sampled}")
        state = state[state[PROCESS_COLUMN] == process].drop(columns=PROCESS_COLUMN)
    return state.sort_values("t_s", kind="stable", ignore_index=True)


def _draw(ax: Axes, state: pd.DataFrame, *, prefix: bool) -> None:
    if PROCESS_COLUMN in state.columns:
        _draw_processes(ax, state, prefix=prefix)
    else:
        for (g, q), part in state.groupby(["guard", "quantity"], observed=True, sort=False):
            label = f"{g}: {q}" if prefix else str(q)
            ax.step(part["t_s"].to_numpy(), part["value"].to_numpy(), where="post",
                    label=label, linewidth=1.3, gid=f"state {g} {q}")  # fmt: skip
    ax.set_xlabel(_TIME_LABEL)
    if state.empty:
        ax.text(0.5, 0.5, "no state sampled", ha="center", va="center", transform=ax.transAxes)
    else:
        if PROCESS_COLUMN not in state.columns:
            ax.legend(loc="upper right", fontsize="small")
        ax.set_ylim(bottom=0)


def _draw_processes(ax: Axes, state: pd.DataFrame, *, prefix: bool) -> None:
    """One step line per (guard, quantity, process): colour ``Ck`` for process k, a line
    style per quantity. The legend names the styles, then the processes (not every pair)."""
    from matplotlib.lines import Line2D

    keys = state.groupby(["guard", "quantity"], observed=True, sort=False).size().index
    names = [f"{g}: {q}" if prefix else str(q) for g, q in keys]
    styles = {key: _STYLES[i % len(_STYLES)] for i, key in enumerate(keys)}
    groups = state.groupby(["guard", "quantity", PROCESS_COLUMN], observed=True, sort=True)
    for (g, q, k), part in groups:
        ax.step(part["t_s"].to_numpy(), part["value"].to_numpy(), where="post",
                color=f"C{int(k) % 10}", linestyle=styles[(g, q)], linewidth=1.1,
                label=f"{f'{g}: {q}' if prefix else q}, process {int(k)}",
                gid=f"state {g} {q} process {int(k)}")  # fmt: skip
    if state.empty:
        return
    handles = [Line2D([], [], color="0.25", linestyle=styles[key], label=name)
               for key, name in zip(keys, names, strict=True)]  # fmt: skip
    processes = sorted(int(k) for k in pd.unique(state[PROCESS_COLUMN]))
    shown = processes if len(processes) <= 10 else processes[:9]
    handles += [Line2D([], [], color=f"C{k % 10}", label=f"process {k}") for k in shown]
    if len(shown) < len(processes):  # the colours repeat past ten
        handles.append(Line2D([], [], color="none", label=f"... {len(processes)} processes"))
    ax.legend(handles=handles, loc="upper right", fontsize="small",
              ncols=2 if len(handles) > 6 else 1)  # fmt: skip


def plot_state(
    result: Any,
    *,
    ax: Axes | None = None,
    guard: str | None = None,
    process: int | None = None,
    figsize: tuple[float, float] | None = None,
    window_s: float = 1.0,
) -> Any:
    """The sampled state of the limiters and the pool (``result.state``) over time.

    With ``ax``: step lines of every sampled quantity (or of one ``guard``'s) on it;
    returns ``ax``. Without: a figure whose top panels are the run's throughput (sent and
    completed per ``window_s``, with the send times as ticks) and concurrency (in flight,
    waiting for the limiter and for a connection), then one panel per guard (``pool`` last),
    all sharing the time axis; returns the Figure.

    A multi-process run: one line per process and quantity in each guard's panel (colour:
    the process; line style: the quantity), each process's own guards and pool, never a
    sum (see the module doc); the top panels are the whole fleet's. ``process=k`` draws
    only process ``k``'s state (as a single-process run's).
    """
    state = state_of(result, guard, process=process)
    if ax is not None:
        _draw(ax, state, prefix=guard is None)
        return ax
    title = f"{getattr(result, 'label', 'run')}: what the limiters held"
    if process is not None:  # the top panels too: that process's records
        import dataclasses

        n = result.meta.get("processes", "?")
        title += f" (process {process} of {n})"
        own = {"df": result.df[result.df[PROCESS_COLUMN] == process]}
        for p in result.meta.get("process_meta", ()):
            if p.get("process") == process:  # its share: the workers line is its own
                own["experiment"] = result.experiment.replace(
                    requests=p["requests"], workers=p["workers"], processes=1
                )
        result = dataclasses.replace(result, **own)
    elif PROCESS_COLUMN in state.columns:
        title += f" ({result.meta.get('processes', '?')} processes)"
    return _figure(result, state, figsize=figsize, window_s=window_s, title=title)


def _figure(
    result: Any, state: pd.DataFrame, *, figsize: tuple[float, float] | None, window_s: float,
    title: str,
) -> Figure:  # fmt: skip
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
    split = PROCESS_COLUMN in state.columns
    for ax, g in zip(axes[2:], guards, strict=False):
        _draw(ax, state[state["guard"].astype(str) == g], prefix=False)
        name = g if g != "pool" else "connection pool"
        ax.set_title(f"{name}, in each process" if split else name, fontsize="medium")
        ax.set_ylabel("state")
    for ax in axes[:-1]:
        ax.set_xlabel("")
    fig.suptitle(title, fontweight="bold")
    return fig
