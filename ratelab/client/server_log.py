"""The server's view of a run: its log, asked of the run's target.

A :class:`~ratelab.LocalServer` logs every request it sees (arrival, departure, decision),
keyed by the ``X-Ratelab-Id`` header, and answers ``GET /_ratelab/log?run=..&t0=..`` with a
run's rows as Parquet. After a run against a loopback target, :func:`fetch_server_log` asks:
so ``result.server_log`` is found through the run itself, whether the target was given as a
LocalServer or as its URL, in this process or another one on this machine (``ratelab
serve``). A target that is not this machine is never asked; one that is not a LocalServer
answers 404, and the Result has no server log.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ratelab.client.transports.aiohttp_transport import USER_AGENT
from ratelab.experiment.experiment import is_loopback

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LOG_PATH", "fetch_server_log"]

#: The LocalServer's log route (see ratelab.server.app).
LOG_PATH = "/_ratelab/log"
_CONTENT_TYPE = "application/vnd.apache.parquet"
_TIMEOUT_S = 10.0


def fetch_server_log(url: str, *, runs: Sequence[str], t0: float) -> pd.DataFrame | None:
    """The rows of ``runs`` in the log of the LocalServer at ``url``, times relative to
    ``t0`` (a ``time.monotonic()`` reading); None when the target is not this machine or
    not a LocalServer (or no longer answers)."""
    if not is_loopback(url):
        return None
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode({"run": ",".join(runs), "t0": repr(float(t0))})
    ask = urllib.parse.urlunsplit((parts.scheme, parts.netloc, LOG_PATH, query, ""))
    request = urllib.request.Request(ask, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:
            if resp.headers.get_content_type() != _CONTENT_TYPE:
                return None
            body = resp.read()
    except (OSError, urllib.error.URLError):  # HTTPError (404) is a URLError
        return None
    import pandas as pd

    log = pd.read_parquet(io.BytesIO(body))
    for column in ("run", "method", "path", "decision"):  # an empty log comes back as object
        if column in log and not isinstance(log[column].dtype, pd.CategoricalDtype):
            log[column] = log[column].astype("category")
    return log
