"""The local target server: an httpbin-compatible aiohttp app that logs every request it sees.

``LocalServer`` runs aiohttp on its own daemon thread with its own event loop, so a client on
any loop (a Jupyter kernel's, ``asyncio.run``'s) or a synchronous client can use it without
deadlocking. Each request can be given a service delay drawn from a seeded latency model, and
gets one row in :meth:`LocalServer.log`, with arrival and departure on the ``time.monotonic()``
clock, so the server's view lines up with the client's records.

    with rl.LocalServer(latency=rl.Uniform(0.05, 0.2)) as server:
        ...  # send requests to server.url, e.g. f"{server.url}/get"
        server.log()

The server can also say no, as real APIs do (see :mod:`ratelab.server.policies`); each request's
``decision`` in the log says which policy answered it:

    rl.LocalServer(rate_limit=rl.ServerRateLimit(20, 1.0, algorithm="gcra"),  # 429 "rate_limited"
                   max_concurrency=8,                          # 503 "overloaded"
                   faults=rl.Faults(error_rate=0.05, seed=1))  # 500 / reset / stall "fault"
    rl.LocalServer(rate_limit=[rl.ServerRateLimit(500, 60),                 # both at once
                               rl.ServerRateLimit(30_000, 60, unit="tokens")],
                   headers="openai")                           # the headers' style
    rl.LocalServer(profile=rl.profiles.github())               # a vendor's shape

A request passes, in order: the rate limits (over a limit: 429 with ``Retry-After``,
answered at once), the concurrency cap (over it: ``overload_status``, answered at once), the
latency delay, then the fault draw's outcome or the route. Rejected requests get no latency:
a limiter in front of a server answers before the server does any work.

Routes (httpbin-compatible JSON): ``/get``, ``/anything[/...]``, ``/status/{code}``,
``/delay/{seconds}``, ``/bytes/{n}``, ``/uuid``, ``/headers``.

This module is the LocalServer's lifecycle (start, stop, the registry of running servers),
:func:`make_policy` (also the SimulatedServer's) and :func:`serve`; the pieces it runs are
:mod:`~ratelab.server.decide` (the per-request decisions), :mod:`~ratelab.server.app` (the
routes), :mod:`~ratelab.server.thread` (the server thread), :mod:`~ratelab.server.state` and
:mod:`~ratelab.server.log` (the request log); :mod:`~ratelab.server.profiles` the vendor
shapes.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import numbers
import threading
import warnings
import weakref
from typing import Self

import numpy as np
import pandas as pd

from ratelab._validate import integer
from ratelab.errors import ConfigError, RatelabWarning
from ratelab.experiment.distributions import Distribution, as_distribution
from ratelab.experiment.experiment import is_loopback_host
from ratelab.protocol.header_styles import STYLES
from ratelab.server.decide import FaultDraws, Policy, ServiceLatency
from ratelab.server.log import DECISIONS, RequestLog
from ratelab.server.policies import (
    Faults,
    ServerRateLimit,
    as_faults,
    as_rate_limits,
    check_names,
)
from ratelab.server.profiles import ServerModel
from ratelab.server.state import SHUTDOWN_TIMEOUT_S, STARTUP_TIMEOUT_S, ServerState
from ratelab.server.thread import serve_on_thread

__all__ = ["DECISIONS", "SHUTDOWN_TIMEOUT_S", "LocalServer", "make_policy", "serve"]

OVERLOAD_STATUS = 503
_DEFAULT = object()  # headers= not given


def make_policy(
    server: LocalServer, faults: FaultDraws | None, actual_rng: np.random.Generator
) -> Policy | None:
    """A fresh Policy for one run of ``server`` (None if it has no policy at all): what
    LocalServer.start and the SimulatedServer both build."""
    if not (server.rate_limit or server.max_concurrency is not None or faults is not None):
        return None
    actual = None
    if server.actual_cost is not None:
        actual = ServiceLatency(server.actual_cost, actual_rng)
    return Policy(
        server.rate_limit, server.max_concurrency, server.overload_status, faults,
        headers=server.headers, actual=actual,
        primary_retry_after=server.profile is None or server.profile.primary_retry_after,
    )  # fmt: skip


_State = ServerState  # the registry's name for the thread state
_running: set[_State] = set()  # every started, not yet stopped server (see stop_all)
_running_lock = threading.Lock()


def _stop_state(state: _State) -> None:
    """Stop a server thread and wait for it; safe to call any number of times."""
    with state.stop_lock:
        if state.stopped:
            return
        state.stopped = True
    with _running_lock:
        _running.discard(state)
    try:
        state.loop.call_soon_threadsafe(state.loop.stop)
    except RuntimeError:  # the loop is already closed: the thread has ended
        pass
    if state.thread is not None and state.thread is not threading.current_thread():
        state.thread.join(STARTUP_TIMEOUT_S)


class LocalServer:
    """An httpbin-compatible HTTP server on its own thread and event loop, logging every request.

    ``latency`` (a distribution, a number of seconds, ``"uniform:0.05,0.2"`` or None) is a
    service delay added to every request before it is answered, drawn from a generator seeded
    with ``seed``. A ``name`` makes re-running a notebook cell safe: starting a server stops a
    running one with the same name. ``LocalServer.stop_all()`` stops every running server.

    Server-side policies (each None by default; see :mod:`ratelab.server.policies`):

    ``rate_limit``
        A :class:`~ratelab.server.policies.ServerRateLimit`, a string such as ``"20/1s:gcra"``
        or ``"30000 tokens/1m"``, a mapping of ServerRateLimit's arguments, or a list of them
        (e.g. requests and tokens per minute, or a global limit plus per-route ones). A
        request is admitted only if every limit that applies has room, and then charged to
        all of them (a ``unit="tokens"`` limit its cost: the ``X-Ratelab-Cost`` request
        header, 1 without it; an unreadable one is answered 400, logged ``"bad_request"``);
        a refused request is charged nothing. Over a limit: 429 at once, with
        ``Retry-After`` (whole seconds, at least 1) and ``X-Retry-After-Ms``, logged as
        ``"rate_limited"``. Limiter state starts fresh at every :meth:`start`.
    ``headers``
        The style of the rate-limit headers every answer carries (see
        :mod:`ratelab.protocol.header_styles`): ``"ietf"`` (default: the IETF draft's
        ``RateLimit-Policy`` and ``RateLimit``, one item per limit, and a problem-details
        JSON body on 429), ``"ietf-06"`` (``RateLimit-Limit/-Remaining/-Reset`` of the most
        restrictive limit, what the server sent before), ``"openai"``, ``"anthropic"``,
        ``"github"``, or None (only the status and ``Retry-After``).
    ``actual_cost``
        A distribution of the fraction of its declared cost a request's response actually
        uses (seeded, drawn per admitted request; clipped to [0, 1]): the unused part is
        refunded to the tokens limits when the response ends, as LLM APIs do. The log's
        ``cost_declared`` and ``cost_actual`` columns say both.
    ``profile``
        A vendor-shaped server model (``rl.profiles.openai(rpm=..., tpm=...)``,
        ``.anthropic(...)``, ``.github(...)``): its limits, header style and Retry-After
        behaviour, instead of ``rate_limit`` (and of ``headers`` unless that is given too:
        the vendor's limits in another style).
    ``max_concurrency``
        At most this many requests in the server at once (counted from admission, through
        the latency delay, to the answer); one more is answered ``overload_status`` (503)
        at once, logged as ``"overloaded"``.
    ``faults``
        :class:`~ratelab.server.policies.Faults` (or a mapping of its fields): seeded injected
        errors (``status``), connection resets (logged with status 444) and stalls (never
        answered; logged 499 when the client hangs up or the server stops), all logged as
        ``"fault"``. The fault stream is its own: a seed's latencies and payloads do not
        change when faults are added.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: object = None,
        seed: int | None = None,
        name: str | None = None,
        rate_limit: object = None,
        max_concurrency: int | None = None,
        overload_status: int = OVERLOAD_STATUS,
        faults: object = None,
        headers: object = _DEFAULT,
        actual_cost: object = None,
        profile: ServerModel | None = None,
    ) -> None:
        if profile is not None:
            if not isinstance(profile, ServerModel):
                raise ConfigError(
                    "profile", profile, "must be a server model such as rl.profiles.openai(...)"
                )
            if rate_limit is not None:
                raise ConfigError(
                    "profile", profile, "gives the rate limits itself: pass it or rate_limit"
                )
            rate_limit = profile.rate_limit
            if headers is _DEFAULT:  # headers= given: the same limits in another style
                headers = profile.headers
            if actual_cost is None:
                actual_cost = profile.actual_cost
        if headers is _DEFAULT:
            headers = "ietf"
        if headers is not None and headers not in STYLES:
            raise ConfigError("headers", headers, f"must be one of {', '.join(STYLES)} or None")
        self.headers: str | None = headers  # type: ignore[assignment]
        self.profile = profile
        if not isinstance(host, str) or not host:
            raise ConfigError("host", host, "must be a non-empty string such as '127.0.0.1'")
        if (
            isinstance(port, bool)
            or not isinstance(port, numbers.Integral)
            or not 0 <= port < 2**16
        ):
            raise ConfigError("port", port, "must be an integer in 0..65535 (0: any free port)")
        if seed is not None:
            seed = integer("seed", seed, minimum=0)
        if name is not None and not isinstance(name, str):
            raise ConfigError("name", name, "must be a string or None")
        self.host, self.name, self.seed = host, name, seed
        self.latency: Distribution | None = as_distribution("latency", latency)
        self.rate_limit: tuple[ServerRateLimit, ...] = as_rate_limits(rate_limit)
        check_names(self.rate_limit)
        self.actual_cost: Distribution | None = as_distribution("actual_cost", actual_cost)
        if max_concurrency is not None:
            max_concurrency = integer("max_concurrency", max_concurrency, minimum=1)
        self.max_concurrency: int | None = max_concurrency
        if (
            isinstance(overload_status, bool)
            or not isinstance(overload_status, numbers.Integral)
            or not 400 <= overload_status <= 599
        ):
            raise ConfigError("overload_status", overload_status, "must be an integer in 400..599")
        self.overload_status = int(overload_status)
        faults = as_faults(faults)
        self.faults: Faults | None = faults
        # spawn(4): the first children are what spawn(2) and spawn(3) gave, so latency, data
        # and fault streams of a seed are unchanged by the actual-cost stream
        latency_rng, self._data_rng, fault_rng, self._actual_rng = np.random.default_rng(
            seed
        ).spawn(4)
        self._latency = None if self.latency is None else ServiceLatency(self.latency, latency_rng)
        self._faults: FaultDraws | None = None
        if faults is not None and faults.active:
            if faults.seed is not None:
                fault_rng = np.random.default_rng(faults.seed)
            self._faults = FaultDraws(faults, fault_rng)
        self._port = int(port)
        self._log = RequestLog()
        self._state: ServerState | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def running(self) -> bool:
        return self._state is not None and self._state.alive

    @property
    def port(self) -> int:
        """The bound port once started (0 before, if the port was left to the OS)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``; needs the port, so start first when ``port=0``."""
        if self._port == 0:
            raise RuntimeError("LocalServer has no port yet: call start() or use `with` first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    def start(self) -> Self:
        """Start serving (no-op if running); returns once the socket is bound."""
        if self.running:
            return self
        self.stop()  # release a previous run's finalizer (its thread is already stopped)
        if self.name is not None:
            with _running_lock:
                same_name = [s for s in _running if s.name == self.name]
            for old in same_name:
                _stop_state(old)
        policy = make_policy(self, self._faults, self._actual_rng)
        if not is_loopback_host(self.host):  # warned before binding
            warnings.warn(
                f"LocalServer on host={self.host!r} listens beyond this machine: anyone who"
                " can reach it can send it requests (use 127.0.0.1 to keep it local)",
                RatelabWarning,
                stacklevel=2,
            )
        state = ServerState(
            self.host, self._port, self.name, self._latency, self._data_rng, self._log, policy
        )
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        state.thread = threading.Thread(
            target=serve_on_thread,
            args=(state, ready),
            daemon=True,
            name=f"ratelab-server-{self.name or self._port}",
        )
        state.thread.start()
        where = f"{self.host}:{self._port}"
        try:
            port = ready.result(timeout=STARTUP_TIMEOUT_S)
        except TimeoutError as exc:
            _stop_state(state)
            raise TimeoutError(f"LocalServer did not start on {where} in time") from exc
        except BaseException as exc:
            state.stopped = True  # the thread cleans up and ends by itself
            state.thread.join()
            if isinstance(exc, OSError):
                raise OSError(
                    exc.errno, f"LocalServer cannot listen on {where}: {exc.strerror or exc}"
                ) from exc
            raise
        self._port, self._state = port, state
        with _running_lock:
            _running.add(state)
        self._finalizer = weakref.finalize(self, _stop_state, state)
        return self

    def stop(self) -> None:
        """Stop serving: close the socket, stop and close the loop, join the thread. Idempotent."""
        if self._finalizer is not None:
            self._finalizer()  # calls _stop_state(state) once

    @classmethod
    def stop_all(cls) -> None:
        """Stop every running LocalServer (e.g. before re-running a notebook)."""
        with _running_lock:
            states = list(_running)
        for state in states:
            _stop_state(state)

    def log(self, *, t0: float | None = None, run: str | None = None) -> pd.DataFrame:
        """One row per request seen (a snapshot). With ``t0`` (a ``time.monotonic()``
        reading) times are relative to it; with ``run``, only that run's rows."""
        return self._log.frame(t0=t0, run=run)

    def clear_log(self) -> None:
        """Forget every logged request."""
        self._log.clear()

    def _wait_for_rows(self, n: int, timeout: float = 5.0) -> bool:
        """Block until the log has ``n`` rows (for rows logged after the client gave up)."""
        return self._log.wait_for(n, timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _policy_repr(self) -> str:
        """``, rate_limit=..., max_concurrency=..., faults=...`` for the policies that are set."""
        out = ""
        if self.profile is not None:
            out += f", profile={self.profile!r}"
        elif self.rate_limit:
            limits = self.rate_limit[0] if len(self.rate_limit) == 1 else list(self.rate_limit)
            out += f", rate_limit={limits!r}"
        if self.max_concurrency is not None:
            out += f", max_concurrency={self.max_concurrency}"
            if self.overload_status != OVERLOAD_STATUS:
                out += f", overload_status={self.overload_status}"
        if self.faults is not None:
            out += f", faults={self.faults!r}"
        default = "ietf" if self.profile is None else self.profile.headers
        if self.rate_limit and self.headers != default:
            out += f", headers={self.headers!r}"
        if self.actual_cost is not None and self.profile is None:
            out += f", actual_cost={self.actual_cost!r}"
        return out

    def __repr__(self) -> str:
        where = f"url={self.url!r}" if self._port else f"host={self.host!r}, port=0"
        name = f", name={self.name!r}" if self.name is not None else ""
        return f"LocalServer({where}, latency={self.latency!r}{self._policy_repr()}{name})"


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    latency: object = None,
    seed: int | None = None,
    rate_limit: object = None,
    max_concurrency: int | None = None,
    headers: str | None = "ietf",
) -> None:
    """Run a LocalServer in the foreground until Ctrl-C (``ratelab serve``).

    ``rate_limit`` takes the command-line form ``"20/1s"`` or ``"20/1s:sliding_window"``
    (or a list of them, or ServerRateLimit objects); ``max_concurrency`` an integer."""
    server = LocalServer(
        host=host,
        port=port,
        latency=latency,
        seed=seed,
        rate_limit=rate_limit,
        max_concurrency=max_concurrency,
        headers=headers,
    )
    with server:
        info = f"ratelab server on {server.url} (latency={server.latency!r}"
        info += f"{server._policy_repr()}); Ctrl-C to stop"
        try:  # print inside the try: Ctrl-C may come as soon as the URL is out
            print(info, flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    print(f"stopped after {len(server.log())} requests", flush=True)


atexit.register(LocalServer.stop_all)
