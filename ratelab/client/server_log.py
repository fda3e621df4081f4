"""The server's view of a run: its log, found through the run's target.

A :class:`~ratelab.LocalServer` logs every request it sees (arrival, departure, decision),
keyed by the ``X-Ratelab-Id`` header; :func:`fetch_server_log` gets the rows of the given
runs, on the client's clock, so ``result.server_log`` lays the server's view beside the
client's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["fetch_server_log"]


def fetch_server_log(url: str, *, runs: Sequence[str], t0: float) -> pd.DataFrame | None:
    """The log rows of ``runs`` kept by the LocalServer at ``url`` (None: the target is not
    a LocalServer), times relative to ``t0`` (a ``time.monotonic()`` reading)."""
    from ratelab.server.local import LocalServer

    server = LocalServer.find(url)
    if server is None:
        return None
    log = server.log(t0=t0)
    return log[log["run"].isin(list(runs))].reset_index(drop=True)
