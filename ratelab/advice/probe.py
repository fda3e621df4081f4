"""``rl.probe``: what is this server's rate limit? A few requests, one at a time, and the
answer with how sure it is.

    p = rl.probe("http://127.0.0.1:8080/get")        # a URL: real requests
    p = rl.probe(server)                             # a started LocalServer: its /get
    p = rl.probe(rl.LocalServer(rate_limit=rl.ServerRateLimit(60, 60), headers=None),
                 virtual=True)                        # its model, on a virtual clock
    p.limit, p.window_s, p.algorithm                 # 60, 60.0, "fixed_window"
    p.findings["window_s"].confidence                # "measured" (and .evidence, .low, .high)
    p.requests, p.observations                       # what it cost, what it saw
    p.rate_limits                                    # (rl.ServerRateLimit(60, 60.0), ...)

How it works and what its confidence labels mean: :mod:`ratelab.advice.probe_infer`. The
requests go through the engine's transport seam (:mod:`ratelab.client.transports`: aiohttp
for a URL), or to a :class:`~ratelab.simulation.server.SimulatedServer` on a
:class:`~ratelab.testing.VirtualClockLoop` with ``virtual=True``; time is the loop's clock.

``budget``: the most requests the probe may send (default: :data:`AUTO_BUDGET` on this
machine, cut to about three windows' worth once the burst has found the limit; a public
host: :data:`~ratelab.experiment.polite.POLITE_MAX_REQUESTS`). To a host that is not this
machine a polite probe (the default) sends at most 5 requests per second and refuses, before
anything is sent, a budget above the polite total; ``polite=False`` opts out. A polite probe
of a public host can only see limits tighter than 5 per second.
"""

from __future__ import annotations

import asyncio
import html
import math
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ratelab.advice.probe_infer import Finding, Findings, from_behaviour, from_headers
from ratelab.advice.probe_session import Observation, ProbeSession
from ratelab.errors import ConfigError
from ratelab.experiment.polite import (
    POLITE_MAX_RATE_PER_S,
    POLITE_MAX_REQUESTS,
    url_is_this_machine,
)
from ratelab.protocol.header_reading import read_headers
from ratelab.protocol.wall_clock import epoch_s

if TYPE_CHECKING:
    import pandas as pd

    from ratelab.client.transports.base import Transport
    from ratelab.server.local import LocalServer
    from ratelab.server.policies import ServerRateLimit

__all__ = ["AUTO_BUDGET", "Probe", "aprobe", "probe"]

#: The default budget on this machine (the burst's bound before the limit is known).
AUTO_BUDGET = 1000
#: The path probed on a LocalServer.
DEFAULT_PATH = "/get"
_OPTIONS = ("budget", "polite", "virtual")
#: The family each server algorithm is found as (GCRA admits what a token bucket admits).
FAMILY = {
    "fixed_window": "fixed_window",
    "sliding_window": "sliding_window",
    "token_bucket": "token_bucket",
    "gcra": "token_bucket",
}


class Probe:
    """What :func:`probe` found (see the module doc). ``limit``, ``window_s``,
    ``algorithm`` (``"fixed_window"``, ``"sliding_window"``, ``"token_bucket"`` for a token
    bucket or GCRA, or None) and ``unit`` are the values; ``findings[name]`` each with its
    ``confidence``, ``evidence`` and bounds; ``requests`` what it cost; ``observations``
    the requests it sent (a DataFrame); ``rate_limits`` the limits as ``ServerRateLimit``s."""

    def __init__(
        self, url: str, found: Findings, observations: list[Observation], *, budget: int,
        clock: str, duration_s: float,
    ) -> None:  # fmt: skip
        self.url = url
        self.source = found.source
        self.quotas = found.quotas
        self.findings: dict[str, Finding] = {
            f.name: f for f in (found.limit, found.window_s, found.algorithm, found.unit)
        }
        self._observations = observations
        self.budget = budget
        self.clock = clock
        self.duration_s = duration_s

    @property
    def limit(self) -> float | None:
        return self.findings["limit"].value

    @property
    def window_s(self) -> float | None:
        return self.findings["window_s"].value

    @property
    def algorithm(self) -> str | None:
        return self.findings["algorithm"].value

    @property
    def unit(self) -> str | None:
        return self.findings["unit"].value

    @property
    def requests(self) -> int:
        """How many requests the probe sent."""
        return len(self._observations)

    @property
    def observations(self) -> pd.DataFrame:
        """One row per request: ``i``, ``phase``, ``sent_s``, ``done_s`` (from the probe's
        start), ``status`` (0: failed), ``retry_after_s``, ``error``."""
        import pandas as pd

        cols = ["i", "phase", "sent_s", "done_s", "status", "retry_after_s", "error"]
        rows = [[getattr(o, c) for c in cols] for o in self._observations]
        frame = pd.DataFrame(rows, columns=cols)
        frame["retry_after_s"] = frame["retry_after_s"].astype(float)
        return frame

    @property
    def rate_limits(self) -> tuple[ServerRateLimit, ...]:
        """The limits found, as ``rl.ServerRateLimit``s (empty when the limit or window is
        unknown). An unknown algorithm is given as ``"sliding_window"``, the strictest (never
        more than ``limit`` in any window). From headers: one per announced quota (without
        an announced window, each gets the main quota's)."""
        from ratelab.server.policies import ServerRateLimit

        window, algorithm = self.window_s, self.algorithm or "sliding_window"
        if self.limit is None or window is None or not window > 0:
            return ()
        window = max(round(window, 3), 0.001)  # to the millisecond
        if not self.quotas:
            return (ServerRateLimit(round(self.limit), window, algorithm=algorithm),)
        out = []
        for q in self.quotas:
            if math.isnan(q.limit) or q.limit < 1 or q.unit == "concurrent":
                continue
            w = q.window_s or window  # a vendor's quotas share one window
            out.append(ServerRateLimit(int(q.limit), w, algorithm=algorithm, unit=q.unit,
                                       name=q.name))  # fmt: skip
        return tuple(out)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(name, value, confidence, evidence) per finding, as text (the table's rows)."""
        out = []
        for f in self.findings.values():
            v = f.value
            text = "?" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
            if f.name == "window_s" and v is not None:
                text += " s"
            out.append((f.name, text, f.confidence, f.evidence))
        return out

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={v} ({c})" for n, v, c, _ in self.rows())
        return f"Probe({self.url!r}: {parts}; {self.requests} requests)"

    def _repr_html_(self) -> str:
        e = html.escape
        body = "".join(
            f"<tr><td>{e(n)}</td><td><b>{e(v)}</b></td><td>{e(c)}</td><td>{e(ev)}</td></tr>"
            for n, v, c, ev in self.rows()
        )
        return (
            f"<div><b>Probe</b> of <code>{e(self.url)}</code>: {self.requests} requests "
            f"over {self.duration_s:.3g} s ({e(self.clock)} clock), from the {e(self.source)}"
            "<table><tr><th>finding</th><th>value</th><th>confidence</th><th>evidence</th>"
            f"</tr>{body}</table></div>"
        )


def _check_budget(budget: object) -> int | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError("budget", budget, "must be a whole number of requests >= 1, or None")
    return budget


def _target(target: object, virtual: bool) -> tuple[str, LocalServer | None]:
    """(the URL probed, the LocalServer to simulate or None)."""
    from ratelab.server.local import LocalServer

    if isinstance(target, LocalServer):
        if virtual:
            return f"http://127.0.0.1:8080{DEFAULT_PATH}", target
        if not target.running:
            raise ConfigError(
                "target", target,
                "a LocalServer that is running (start() it or use `with`), or virtual=True "
                "to probe its model on a virtual clock",
            )  # fmt: skip
        return target.url + DEFAULT_PATH, None
    if virtual:
        raise ConfigError("virtual", True, "needs a rl.LocalServer(...) to simulate as target")
    if not isinstance(target, str):
        raise ConfigError("target", target, "must be a URL ('http://host:port/path') or a "
                          "rl.LocalServer")  # fmt: skip
    try:
        parts = urlsplit(target)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError("target", target, "must be an http(s) URL with a host, e.g. "
                          "'http://127.0.0.1:8080/get'")  # fmt: skip
    return target, None


def _plan(target: object, budget: object, polite: object, virtual: object,
          options: dict[str, Any]) -> tuple[str, LocalServer | None, int, bool, float]:  # fmt: skip
    """Every check, before anything is sent: (url, server to simulate, budget, auto, gap_s)."""
    if options:
        name = next(iter(options))
        raise ConfigError(name, options[name], f"is not an option of probe: {', '.join(_OPTIONS)}")
    for name, value in (("polite", polite), ("virtual", virtual)):
        if not isinstance(value, bool):
            raise ConfigError(name, value, "must be True or False")
    n = _check_budget(budget)
    url, model = _target(target, bool(virtual))
    gap_s = 0.0
    if model is None and polite and not url_is_this_machine(url):
        if n is not None and n > POLITE_MAX_REQUESTS:
            raise ConfigError(
                "budget", n,
                f"{url} is not this machine: a polite probe sends it at most "
                f"{POLITE_MAX_REQUESTS} requests. Pass polite=False to opt out (be sure the "
                "host allows it)",
            )  # fmt: skip
        n = POLITE_MAX_REQUESTS if n is None else n
        gap_s = 1.0 / POLITE_MAX_RATE_PER_S + 1e-6  # at most 5 in any second
    auto = n is None
    return url, model, AUTO_BUDGET if n is None else n, auto, gap_s


async def _probe(transport: Transport, url: str, budget: int, auto: bool, gap_s: float,
                 clock: str) -> Probe:  # fmt: skip
    s = ProbeSession(transport, url, budget=budget, gap_s=gap_s)
    await s.open()
    try:
        first = await s.send("burst")
        quotas = read_headers(first.headers, now_epoch_s=epoch_s(s.loop)) if first.headers else []
        if quotas:
            found = await from_headers(s, first, quotas)
        else:
            found = await from_behaviour(s, first, auto)
    finally:
        await s.aclose()
    return Probe(url, found, s.observations, budget=s.budget, clock=clock, duration_s=s.time())


async def aprobe(
    target: str | LocalServer, *, budget: int | None = None, polite: bool = True,
    virtual: bool = False, **options: Any,
) -> Probe:  # fmt: skip
    """:func:`probe` in the running loop (a real probe; ``virtual=True`` runs on its own
    virtual-clock loop in a worker thread, awaited here)."""
    url, model, n, auto, gap_s = _plan(target, budget, polite, virtual, options)
    if model is not None:
        return await asyncio.to_thread(_run_virtual, model, url, n, auto)
    from ratelab.client.transports import transport_for

    return await _probe(transport_for("aiohttp"), url, n, auto, gap_s, "real")


def _run_virtual(model: LocalServer, url: str, budget: int, auto: bool) -> Probe:
    from ratelab.simulation.runner import SIMULATION_EPOCH_S
    from ratelab.simulation.server import SimulatedServer
    from ratelab.testing.virtual_clock import VirtualClockLoop

    loop = VirtualClockLoop(epoch_offset_s=SIMULATION_EPOCH_S)
    try:
        transport = SimulatedServer(model)
        return loop.run_until_complete(_probe(transport, url, budget, auto, 0.0, "virtual"))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def probe(
    target: str | LocalServer, *, budget: int | None = None, polite: bool = True,
    virtual: bool = False, **options: Any,
) -> Probe:  # fmt: skip
    """Probe ``target`` (a URL, or a ``rl.LocalServer``: running, or its model with
    ``virtual=True``) for its rate limit; see the module doc. Bad input is a ConfigError
    before anything is sent."""
    url, model, n, auto, gap_s = _plan(target, budget, polite, virtual, options)
    if model is not None:
        return _run_virtual(model, url, n, auto)
    from ratelab.client.transports import transport_for

    def go() -> Probe:
        return asyncio.run(_probe(transport_for("aiohttp"), url, n, auto, gap_s, "real"))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return go()
    box: dict[str, Any] = {}  # inside a running loop (Jupyter): a thread with its own

    def target_fn() -> None:
        try:
            box["probe"] = go()
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=target_fn, name="ratelab-probe", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["probe"]
