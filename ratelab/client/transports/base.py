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

Costs: when the Experiment has a ``cost``, the engine sets ``send_costs`` before
:meth:`open` and writes each attempt's cost into ``store.cost[row]`` before :meth:`send`;
every transport sends it in the ``X-Ratelab-Cost`` header (:meth:`Transport.cost_header`
gives the value, a decimal integer, or None).

Headers: :meth:`Transport.send` may return the response headers as a fourth element of its
reply (a case-insensitive mapping); the engine shows them to the guards that ask for them
(``rl.HeaderPacing``). A transport returning the older three-element reply still works: its
guards then see ``headers=None``.

One Transport object serves one run: :meth:`open` is awaited inside the running loop before
the first attempt, :meth:`aclose` once at the end, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ratelab.experiment.request_options import RATE_LIMIT_HEADERS, RATE_LIMIT_PREFIXES
from ratelab.protocol.quota import COST_HEADER
from ratelab.records.store import RecordStore
from ratelab.versions import versions

__all__ = [
    "COST_HEADER",
    "ID_HEADER",
    "HeaderNames",
    "Reply",
    "RequestSpec",
    "Stamps",
    "Transport",
    "single_host_cap",
    "user_agent",
]

#: The header that carries ``"{run}-{request_id}-{attempt}"`` so the server log joins the
#: rows. Every transport writes it (and :func:`user_agent`) on every attempt.
ID_HEADER = "X-Ratelab-Id"


def user_agent(client: str) -> str:
    """The User-Agent of every request: it names ratelab (politeness towards hosts that are
    not this machine) and the HTTP client that sent it, e.g. ``ratelab/0.1 (+httpx)``."""
    return f"ratelab/{versions()['ratelab']} (+{client})"


#: What :meth:`Transport.send` returns: (HTTP status, the ``Retry-After`` header of a
#: response with status >= 400 or None, response body size in bytes[, the response headers:
#: a case-insensitive mapping of str, or None]).
Reply = tuple[int, str | None, int] | tuple[int, str | None, int, Mapping[str, str] | None]


def single_host_cap(limit: int, limit_per_host: int) -> int:
    """The connection cap that binds for an Experiment's one host: the tighter of the
    strategy's ``limit`` and ``limit_per_host`` (0: neither is set, unlimited)."""
    caps = [c for c in (limit, limit_per_host) if c]
    return min(caps) if caps else 0


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


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What one endpoint's requests carry beyond the method and URL (the Experiment's
    ``headers`` / ``json`` / ``data`` / ``auth`` merged with the endpoint's overrides)."""

    headers: Mapping[str, str] | None = None
    json: Any = None
    data: str | Mapping[str, str] | None = None
    auth: tuple[str, str] | None = None


class HeaderNames:
    """Which response headers an attempt records into ``store.header_rows``: the rate-limit
    ones (:data:`~ratelab.experiment.request_options.RATE_LIMIT_HEADERS`, names starting
    with ``x-ratelimit-`` / ``anthropic-ratelimit-``) and ``extra`` names.

    :meth:`record` is cheap when nothing matches: one lower-cased join of the names and
    two or three substring tests per response (about 0.5 us); rows are built only then."""

    __slots__ = ("exact", "extra", "prefixes")

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.extra = tuple(dict.fromkeys(e.lower() for e in extra))
        self.exact = RATE_LIMIT_HEADERS | frozenset(self.extra)
        self.prefixes = RATE_LIMIT_PREFIXES

    def wanted(self, name: str) -> bool:
        n = name.lower()
        return n in self.exact or n.startswith(self.prefixes)

    def record(self, store: RecordStore, row: int, headers: Any) -> None:
        """Append ``(row, name, value)`` for every recorded header of a response
        (``headers``: any mapping of str; repeated names allowed, as in a multidict)."""
        joined = "\0".join(headers.keys()).lower()
        if (
            "ratelimit" not in joined
            and "retry-after" not in joined
            and not (self.extra and any(e in joined for e in self.extra))
        ):
            return
        wanted, rows = self.wanted, store.header_rows
        for name, value in headers.items():
            if wanted(name):
                rows.append((row, name.lower(), value))


#: The default: the rate-limit headers only.
DEFAULT_HEADER_NAMES = HeaderNames()


class Transport:
    """Sends the attempts of one run. Subclass it to drive another client.

    ``limit`` / ``limit_per_host`` are the strategy's connection-pool caps (0: unlimited),
    ``timeout_s`` the Experiment's total timeout per attempt (None: none).
    """

    #: A short name recorded in ``result.meta["transport"]``.
    name = "transport"
    #: What each URL's requests carry (absent: nothing beyond method and URL); set by
    #: :meth:`prepare` before :meth:`open`.
    specs: Mapping[str, RequestSpec] = {}
    #: Which response headers to record (see :class:`HeaderNames`).
    header_names: HeaderNames = DEFAULT_HEADER_NAMES
    #: Whether attempts carry a cost (``Experiment(cost=)``); set by the engine before
    #: :meth:`open`.
    send_costs: bool = False

    def cost_header(self, row: int) -> str | None:
        """The ``X-Ratelab-Cost`` value of the attempt in ``row`` (None: no cost)."""
        if not self.send_costs:
            return None
        cost = self.stamps.store.cost[row]
        return None if cost != cost else str(int(cost))  # NaN: this run has no costs

    def prepare(self, *, specs: Mapping[str, RequestSpec], header_names: HeaderNames) -> None:
        """Called by the engine before :meth:`open`: what each URL's requests carry
        (headers, body, auth; by full URL) and which response headers to record."""
        self.specs = specs
        self.header_names = header_names

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

    def state(self) -> Mapping[str, float]:
        """The connection pool now, ``{quantity: number}`` (e.g. ``in_use``, ``queued``),
        sampled with the guards' state into ``result.state`` (as guard ``"pool"``). Plain,
        cheap, read-only; called on the loop's thread between :meth:`open` and
        :meth:`aclose`. Default: ``{}`` (nothing sampled)."""
        return {}
