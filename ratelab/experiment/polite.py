"""Polite by default: what a run may send to a host that is not this machine.

Against such a host (``polite=True``, the default) a run is refused, before anything is
sent, when either bound is above its limit:

* **requests that can go out**: ``requests x Retry.max_attempts`` (every process together:
  the processes split ``requests``). Redirects add none: ratelab's transports do not follow
  them (a 3xx is the attempt's row). A ``request=fn`` is the user's own code: each call
  counts as one request, and what else it sends (redirects it follows, extra calls) is its
  own responsibility.
* **the busiest one-second window**: the most requests any 1 s can hold, bursts included,
  every process together, computed from the strategy (:func:`busiest_second`). Each
  attempt, retries included, passes every guard of the strategy (``client/engine.py``), so
  the tightest part bounds them all; a per-process guard counts once per process, a
  :class:`~ratelab.SharedRateLimit` once for all. A part that is no rate (``Concurrency``,
  ``ConnectionLimit``, ``Retry``, a custom strategy without ``most_in_one_second``) bounds
  nothing, and neither do open-loop ``arrivals``: they are a schedule, not a gate (a
  backlog, when every worker is busy or the loop runs late, goes out at once when it
  clears, and retries follow no schedule). With no bound, the busiest second is the whole
  run's count.

Whether the host is this machine is decided by resolving it (:func:`host_is_this_machine`):
numeric forms (``0x7f000001``, ``2130706433``, ``127.1``, ``0177.0.0.1``), IPv6
(``::1``, ``::ffff:127.0.0.1``) and names go through the system resolver
(``socket.getaddrinfo``); a name that resolves to any address that is not loopback, or
does not resolve (within :data:`RESOLVE_TIMEOUT_S`), is public. ``localhost`` names
(RFC 6761: ``localhost``, ``x.localhost``, any case, a trailing dot) are this machine even
when the resolver does not know them (a request to one cannot reach another host), unless
it resolves them elsewhere.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ratelab.errors import ConfigError

if TYPE_CHECKING:
    from ratelab.experiment.experiment import Experiment
    from ratelab.experiment.strategies import Strategy

__all__ = [
    "POLITE_MAX_RATE_PER_S",
    "POLITE_MAX_REQUESTS",
    "RESOLVE_TIMEOUT_S",
    "busiest_second",
    "check_polite",
    "host_is_this_machine",
    "requests_out",
]

#: Against a host that is not this machine, at most this many requests can go out ...
POLITE_MAX_REQUESTS = 100
#: ... and at most this many per second: in any window of 1 s, bursts included.
POLITE_MAX_RATE_PER_S = 5.0
#: A host whose resolution takes longer than this counts as public.
RESOLVE_TIMEOUT_S = 2.0
_EPS = 1e-9  # float rounding in a rate times a window: 5 x 0.2 is 1.0


def _is_loopback_address(text: str) -> bool:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])  # fe80::1%eth0: no scope
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1
    return addr.is_loopback


#: How long a host's resolution is reused: a sweep builds many Experiments for one host.
RESOLVE_CACHE_S = 60.0
_resolved: dict[str, tuple[float, list[str] | None]] = {}


def _resolve(host: str) -> list[str] | None:
    """Every address ``host`` resolves to, or None (no answer within RESOLVE_TIMEOUT_S);
    remembered for RESOLVE_CACHE_S."""
    now = time.monotonic()
    hit = _resolved.get(host)
    if hit is not None and now - hit[0] < RESOLVE_CACHE_S:
        return hit[1]
    addresses = _resolve_now(host)
    if len(_resolved) > 1024:
        _resolved.clear()
    _resolved[host] = (now, addresses)
    return addresses


def _resolve_now(host: str) -> list[str] | None:
    box: dict[str, list[str] | None] = {}

    def go() -> None:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            box["addresses"] = [str(info[4][0]) for info in infos]
        except (OSError, UnicodeError, ValueError):
            box["addresses"] = None

    thread = threading.Thread(target=go, name="ratelab-resolve", daemon=True)
    thread.start()
    thread.join(RESOLVE_TIMEOUT_S)  # a resolver that hangs: public, and we move on
    return box.get("addresses")


def host_is_this_machine(host: str) -> bool:
    """Whether every address ``host`` (a name, a numeric form, ``[::1]``) resolves to is
    loopback; a host that does not resolve is not this machine (except ``localhost``
    names, see the module doc)."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if not host:
        return False
    if _is_loopback_address(host):
        return True
    addresses = _resolve(host)
    name = host.lower().rstrip(".")
    if not addresses:
        return name == "localhost" or name.endswith(".localhost")
    return all(_is_loopback_address(a) for a in addresses)


def url_is_this_machine(url: str) -> bool:
    """:func:`host_is_this_machine` for a URL's host."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host_is_this_machine(host or "")


def requests_out(experiment: Experiment) -> int:
    """The most requests the run can send: requests x attempts (all processes together;
    redirects are not followed, see the module doc)."""
    from ratelab.experiment.strategies import Retry

    attempts = [p.max_attempts for p in experiment.strategy.parts if isinstance(p, Retry)]
    return experiment.requests * max(attempts, default=1)


def _part_bound(part: Strategy, processes: int) -> tuple[int, str] | None:
    """The most requests one strategy part lets through in any 1 s window, all processes
    together, and how that was computed; None if it bounds no rate."""
    from ratelab.experiment.strategies import Adaptive, RateLimit, SlidingWindow, TokenBucket

    per = f" x {processes} processes" if processes > 1 else ""
    if isinstance(part, RateLimit | TokenBucket):
        # a bucket of capacity C (full at the start: aiolimiter's level 0, a token bucket's
        # burst) refilled at r/s: the k-th admission in [t, t + 1), at t_k, needs one unit
        # left after k - 1 others, so k - 1 <= C - 1 + r (t_k - t) < C - 1 + r: k < C + r
        if isinstance(part, RateLimit):
            capacity, rate = part.max_rate, part.max_rate / part.period_s
        else:
            capacity, rate = part.burst, part.rate_per_s
        one = math.ceil(capacity + rate - _EPS) - 1
        how = f"{part!r}: {capacity:g} at once + {rate:g}/s over the second, less one"
    elif isinstance(part, SlidingWindow):
        one = part.limit * math.ceil(1.0 / part.window_s - _EPS)
        how = f"{part!r}: {part.limit} per {part.window_s:g} s window"
    elif isinstance(part, Adaptive):
        one = math.ceil(part.max_rate_per_s - _EPS)
        how = f"{part!r}: spaced 1 / rate apart, rate <= {part.max_rate_per_s:g}/s"
    else:
        most = getattr(part, "most_in_one_second", None)  # e.g. SharedRateLimit (client/)
        if most is None:
            return None
        count, shared = most
        if shared:
            return int(count), f"{part!r}: {count} in any second, shared by every process"
        one, how = int(count), f"{part!r}: {count} in any second"
    return one * processes, how + per


def busiest_second(experiment: Experiment, *, processes: int) -> tuple[int, str]:
    """The most requests any window of 1 s can hold (bursts and retries included, all
    ``processes`` together), and how it was found. Without a part that bounds the rate it
    is :func:`requests_out` (the whole run)."""
    total = requests_out(experiment)
    bounds = [b for b in (_part_bound(p, processes) for p in experiment.strategy.parts) if b]
    if not bounds:
        return total, (
            "the strategy has no rate-limiting part (open-loop arrivals, Concurrency and "
            "ConnectionLimit do not bound a second), so the whole run could go in one second"
        )
    count, how = min(bounds)
    if total < count:
        return total, f"the whole run ({total} requests) is fewer than {how}"
    return count, how


def check_polite(experiment: Experiment, *, processes: int | None = None) -> None:
    """Refuse (ConfigError) a polite run to a host that is not this machine whose requests
    that can go out, or whose busiest second, exceed the polite limits; called when an
    Experiment is built and when a run starts (with the run's ``processes``)."""
    exp = experiment
    if not exp.polite or url_is_this_machine(exp.target):
        return
    n = exp.processes if processes is None else processes
    opt_out = (
        "Pass polite=False to opt out (be sure the host allows it): ratelab then sends "
        "what the experiment says"
    )
    where = f"{exp.target} is not this machine"
    total = requests_out(exp)
    if total > POLITE_MAX_REQUESTS:
        attempts = total // max(exp.requests, 1)
        why = f" ({exp.requests} requests x {attempts} attempts)" if attempts > 1 else ""
        raise ConfigError(
            "requests", exp.requests,
            f"{where}: the requests that can go out are {total}{why}, and by default "
            f"ratelab sends it at most {POLITE_MAX_REQUESTS}",
            opt_out,
        )  # fmt: skip
    busiest, how = busiest_second(exp, processes=n)
    limit = math.floor(POLITE_MAX_RATE_PER_S + _EPS)
    if busiest > limit:
        burst_free = f"rl.RateLimit(1, period_s={1 / POLITE_MAX_RATE_PER_S:g})"
        raise ConfigError(
            "strategy", exp.strategy,
            f"{where}: the busiest second could hold {busiest} requests ({how}), and by "
            f"default ratelab sends it at most {POLITE_MAX_RATE_PER_S:g} in any second. "
            f"Use a burst-free limit such as {burst_free} (5 in any second; one process)",
            opt_out,
        )  # fmt: skip
