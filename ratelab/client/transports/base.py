"""The seam between the engine and the network: a :class:`Transport` sends one attempt.

The engine owns the attempt's row in the :class:`~ratelab.records.store.RecordStore`. It
stamps ``admitted_s`` and, provisionally, ``sent_s`` (= admitted) before it calls
:meth:`Transport.send`, and ``done_s``, ``status``, ``bytes`` and ``error`` after it. The
transport stamps what only it can see, through :class:`Stamps`:

- ``pool_queued_s`` / ``pool_acquired_s`` when the attempt had to wait for a pooled
  connection, and then ``sent_s`` again (= acquired: the request went out after the wait);
- ``headers_s`` when the response headers arrived.

A failure is raised: the engine turns the exception into the attempt's ``error`` (named by
:meth:`Transport.error_name`), so a failed request is a row, never a crashed run.

One Transport object serves one run: :meth:`open` is awaited inside the running loop before
the first attempt, :meth:`aclose` once at the end, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable

from ratelab.records.store import RecordStore
from ratelab.versions import versions

__all__ = ["ID_HEADER", "Reply", "Stamps", "Transport", "user_agent"]

#: The header that carries ``"{run}-{request_id}-{attempt}"`` so the server log joins the
#: rows. Every transport writes it (and :func:`user_agent`) on every attempt.
ID_HEADER = "X-Ratelab-Id"


def user_agent(client: str) -> str:
    """The User-Agent of every request: it names ratelab (politeness towards hosts that are
    not this machine) and the HTTP client that sent it, e.g. ``ratelab/0.1 (+httpx)``."""
    return f"ratelab/{versions()['ratelab']} (+{client})"


#: What :meth:`Transport.send` returns: (HTTP status, the ``Retry-After`` header of a
#: response with status >= 400 or None, response body size in bytes).
Reply = tuple[int, str | None, int]


class Stamps:
    """Where a transport writes an attempt's times: the run's record columns, on the run's
    clock (seconds relative to the run's start ``t0``). Read ``stamps.now() - stamps.t0``
    and store into ``stamps.store.<column>[row]``; :meth:`at` does the subtraction."""

    __slots__ = ("now", "store", "t0")

    def __init__(self, store: RecordStore, now: Callable[[], float], t0: float = 0.0) -> None:
        self.store = store
        self.now = now
        self.t0 = t0

    def at(self) -> float:
        """Now, on the run clock."""
        return self.now() - self.t0


class Transport:
    """Sends the attempts of one run. Subclass it to drive another client.

    ``limit`` / ``limit_per_host`` are the strategy's connection-pool caps (0: unlimited),
    ``timeout_s`` the Experiment's total timeout per attempt (None: none).
    """

    #: A short name recorded in ``result.meta["transport"]``.
    name = "transport"

    async def open(
        self, stamps: Stamps, *, limit: int, limit_per_host: int, timeout_s: float | None
    ) -> None:
        """Build what the run needs (sessions, pools) inside the running loop."""
        self.stamps = stamps

    async def send(self, row: int, method: str, url: str, request_id: str) -> Reply:
        """Send one attempt (recorded in ``row``; ``request_id`` is the join header's
        value) and read the response; raise on failure."""
        raise NotImplementedError

    def error_name(self, exc: BaseException) -> str:
        """The ``error`` value of an attempt that raised ``exc``: its class name."""
        return type(exc).__name__

    async def aclose(self) -> None:
        """The run is over: close connections."""
