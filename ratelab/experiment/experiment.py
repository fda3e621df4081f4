"""What to run: the immutable, plain-data :class:`Experiment`.

    exp = rl.Experiment(
        target="http://127.0.0.1:8080",       # a URL (a LocalServer gives its own)
        endpoints={"/get": 1.0},               # path -> weight, or a plain "/get"
        requests=200, workers=10,
        think_time=rl.Uniform(0.05, 1.0),      # sleep before each request (default: none)
        strategy=rl.RateLimit(20) + rl.ConnectionLimit(10),
        seed=1,
    )

Every value is checked when the Experiment is built; a bad one raises
:class:`~ratelab.errors.ConfigError` naming the parameter, the value and what is valid.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ratelab._validate import integer, positive_number
from ratelab.errors import ConfigError
from ratelab.experiment.arrivals import ARRIVALS, Arrivals
from ratelab.experiment.distributions import Distribution, as_distribution
from ratelab.experiment.loop_option import check_loop
from ratelab.experiment.polite import POLITE_MAX_RATE_PER_S as POLITE_MAX_RATE_PER_S
from ratelab.experiment.polite import POLITE_MAX_REQUESTS as POLITE_MAX_REQUESTS
from ratelab.experiment.polite import check_polite, url_is_this_machine
from ratelab.experiment.request_options import (
    check_auth,
    check_body,
    check_endpoint_options,
    check_headers,
    check_record_headers,
    check_request,
    redact_auth,
    redact_headers,
    request_to_plain,
)
from ratelab.experiment.strategies import Strategy, as_strategy, check_cost

if TYPE_CHECKING:
    from ratelab.server.local import LocalServer

__all__ = [
    "CLIENTS",
    "MAX_REQUESTS",
    "MAX_RUN_S",
    "Experiment",
    "check_costs",
    "check_drawn",
    "is_loopback",
    "is_loopback_host",
]


#: Set while plain data is read (``from_dict``: a saved Result, a TOML file, a child
#: process's share): the polite check then waits for the run's start (``client/runner.py``,
#: ``client/processes.py``), so a saved Result loads anywhere, resolver or not.
_READING_PLAIN_DATA: ContextVar[bool] = ContextVar("ratelab_reading_plain_data", default=False)
#: The most requests one Experiment may plan: its records are preallocated (~110 bytes a row).
MAX_REQUESTS = 10_000_000
#: The longest a run may be scheduled to last: an arrival time or a think time beyond this
#: (or not finite) is refused before anything is sent, since the run would never end.
MAX_RUN_S = 7 * 86_400.0


def is_loopback(url: str) -> bool:
    """Whether the URL's host is this machine: every address it resolves to is loopback
    (:func:`ratelab.experiment.polite.host_is_this_machine`: numeric forms, IPv6,
    ``localhost`` names; a host that does not resolve is not)."""
    return url_is_this_machine(url)


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address (``[::1]`` brackets allowed) is this machine only;
    ``0.0.0.0``, ``::`` and ``""`` (every interface) are not."""
    host = host.strip().removeprefix("[").removesuffix("]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

#: The HTTP clients a run can send with (``client=``); whether the chosen one is installed
#: is checked when a run starts, so a saved Result loads anywhere.
CLIENTS = ("aiohttp", "httpx")


def _is_server(value: object) -> bool:
    """A LocalServer (or anything that starts, stops and has a ``url``)."""
    return all(callable(getattr(value, a, None)) for a in ("start", "stop")) and hasattr(
        type(value), "url"
    )


def _check_target(value: object) -> str:
    if _is_server(value):  # its URL is the target; a server not yet running starts now
        server: LocalServer = value  # type: ignore[assignment]
        if not server.running:
            server.start()
        value = server.url
    if not isinstance(value, str):
        raise ConfigError("target", value, "must be an http(s) URL or a rl.LocalServer(...)")
    valid = "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number in 0..65535
    except ValueError as e:
        raise ConfigError("target", value, f"{valid} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("target", value, valid)
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        raise ConfigError("target", value, "the port must be a number in 1..65535")
    if parts.query or parts.fragment or value.rstrip("/").endswith(("?", "#")):
        raise ConfigError(
            "target", value,
            "must have no ?query or #fragment: the endpoints' paths are appended to the "
            "target, so put a query in the endpoint ('/get?q=1') instead",
        )  # fmt: skip
    return value.rstrip("/")


def check_schedule(experiment: Experiment) -> None:
    """Refuse an open-loop schedule or a think time that could never finish: arrival times
    beyond :data:`MAX_RUN_S`, or a think-time distribution whose mean is not below it."""
    exp = experiment
    if exp.arrivals is not None and exp.requests > 1:
        last_s = (exp.requests - 1) / exp.arrivals.rate_per_s
        if not last_s <= MAX_RUN_S:
            raise ConfigError(
                "arrivals", exp.arrivals,
                f"schedules the last of {exp.requests} requests at {last_s:.3g} s: the rate "
                f"must put every arrival within {MAX_RUN_S:,.0f} s (the longest run)",
            )  # fmt: skip
    if exp.think_time is not None:
        try:
            mean_s = float(exp.think_time.mean_s)
        except (OverflowError, ValueError):
            mean_s = math.inf
        if not mean_s <= MAX_RUN_S:
            raise ConfigError(
                "think_time", exp.think_time,
                f"has a mean of {mean_s:.3g} s: it must be at most {MAX_RUN_S:,.0f} s "
                "(the longest run)",
            )  # fmt: skip


def check_drawn(parameter: str, value: object, drawn_s: Any) -> None:
    """Refuse drawn times (think times, arrival times) that are not finite or lie beyond
    :data:`MAX_RUN_S`: a run would sleep for ever. Called before anything is sent."""
    import numpy as np

    times = np.asarray(drawn_s, dtype=float)
    if times.size and not (np.isfinite(times).all() and times.max() <= MAX_RUN_S):
        worst = times[~np.isfinite(times)][0] if not np.isfinite(times).all() else times.max()
        raise ConfigError(
            parameter, value,
            f"drew a time of {worst:.3g} s: every drawn time must be finite and at most "
            f"{MAX_RUN_S:,.0f} s (the longest run)",
        )  # fmt: skip


#: The largest cost one request may draw (tokens): a header's integer stays exact.
MAX_COST = 2.0**53


def check_costs(cost: object, drawn: Any) -> None:
    """Refuse drawn costs that are not finite or beyond :data:`MAX_COST` (a LogNormal
    with a huge sigma): they could not be sent as a whole number. Before anything is sent."""
    import numpy as np

    costs = np.asarray(drawn, dtype=float)
    if costs.size and not (np.isfinite(costs).all() and costs.max() <= MAX_COST):
        worst = costs[~np.isfinite(costs)][0] if not np.isfinite(costs).all() else costs.max()
        raise ConfigError(
            "cost", cost,
            f"drew a cost of {worst:.3g}: every drawn cost must be finite and at most "
            f"{MAX_COST:.3g} tokens",
        )  # fmt: skip


def _check_endpoints(value: object) -> dict[str, float]:
    if isinstance(value, str):
        value = {value: 1.0}
    elif isinstance(value, Sequence) and not isinstance(value, Mapping):
        value = dict.fromkeys(value, 1.0)
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            "endpoints", value, "must be a path like '/get' or a non-empty {path: weight} mapping"
        )
    out: dict[str, float] = {}
    for path, weight in value.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError("endpoints", path, "each path must be a string starting with '/'")
        w = weight
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"endpoints[{path!r}]", weight, "weights must be finite numbers >= 0")
        out[path] = float(w)
    if sum(out.values()) <= 0:
        raise ConfigError("endpoints", value, "at least one weight must be > 0")
    return out


def _split_endpoint_options(
    endpoints: object, options: Mapping[str, Mapping[str, Any]] | None
) -> tuple[object, dict[str, Mapping[str, Any]]]:
    """``{"/post": {"weight": 1, "method": "POST", ...}}`` -> weights and overrides."""
    out = dict(options or {})
    if isinstance(endpoints, Mapping) and any(isinstance(v, Mapping) for v in endpoints.values()):
        weights: dict[object, object] = {}
        for path, v in endpoints.items():
            if isinstance(v, Mapping):
                weights[path] = v.get("weight", 1.0)
                rest = {k: x for k, x in v.items() if k != "weight"}
                if rest:
                    out[path] = rest  # type: ignore[index]
                else:
                    out.pop(path, None)  # type: ignore[arg-type]
            else:
                weights[path] = v
        endpoints = weights
    return endpoints, out


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """An immutable description of one run, plain data: ``pickle`` and
    ``Experiment.from_dict(e.to_dict())`` give an equal Experiment. Build a variant with
    :meth:`replace`.

    ``target`` is the base URL. A :class:`~ratelab.LocalServer` may be given instead: its URL
    is taken (the server is started first if it is not running, and keeps running until it
    is stopped or the interpreter exits).

    ``client`` is the HTTP client that sends the requests: ``"aiohttp"`` (the default) or
    ``"httpx"`` (``pip install 'ratelab[httpx]'``; checked when a run starts).
    ``result.meta["transport"]`` says which ran.

    ``cost`` is what each request costs, in tokens: any distribution (``rl.Uniform(200,
    2000)``, drawn per request from the ``seed``, as think times are) or a number (a fixed
    cost); drawn values are rounded to whole tokens. Each request sends its cost in the
    ``X-Ratelab-Cost`` header, records it in the ``cost`` column (a retry keeps its
    request's cost), and ``rl.RateLimit(..., unit="tokens")`` acquires it. None (the
    default): requests have no cost, send no such header, and the column is NaN.
    """

    target: str
    endpoints: Mapping[str, float] | str | Sequence[str] = "/get"
    requests: int = 100
    workers: int = 10
    think_time: Distribution | None = None
    strategy: Strategy = field(default_factory=lambda: as_strategy(None))
    arrivals: Arrivals | None = None
    timeout_s: float = 30.0
    method: str = "GET"
    seed: int | None = None
    name: str | None = None
    polite: bool = True
    processes: int = 1
    loop: str = "asyncio"
    client: str = "aiohttp"
    request: Callable[..., Any] | str | None = None
    headers: Mapping[str, str] | None = None
    json: Any = None
    data: str | Mapping[str, str] | None = None
    auth: tuple[str, str] | str | None = None
    record_headers: Sequence[str] = ()
    endpoint_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cost: Distribution | float | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "target", _check_target(self.target))
        weights, options = _split_endpoint_options(self.endpoints, self.endpoint_options)
        s(self, "endpoints", _check_endpoints(weights))
        s(self, "requests", integer("requests", self.requests, minimum=0, maximum=MAX_REQUESTS))
        # more workers than requests would idle: the run starts min(workers, requests)
        s(self, "workers", integer("workers", self.workers, minimum=1, maximum=MAX_REQUESTS))
        s(self, "think_time", as_distribution("think_time", self.think_time))
        s(self, "strategy", as_strategy(self.strategy))
        s(self, "cost", as_distribution("cost", self.cost))  # a number: a fixed cost
        check_cost(self.strategy, self.cost)  # type: ignore[arg-type]
        if self.arrivals is not None and not isinstance(self.arrivals, Arrivals):
            if isinstance(self.arrivals, Mapping):
                kind = self.arrivals.get("type")
                cls = ARRIVALS.get(str(kind))
                if cls is None:
                    raise ConfigError("arrivals.type", kind, "must be 'Constant' or 'Poisson'")
                s(self, "arrivals", cls(self.arrivals.get("rate_per_s")))  # type: ignore[call-arg]
            else:
                raise ConfigError(
                    "arrivals",
                    self.arrivals,
                    "must be None (closed loop), rl.Constant(r) or rl.Poisson(r)",
                )
        check_schedule(self)
        s(self, "timeout_s", positive_number("timeout_s", self.timeout_s))
        if not isinstance(self.method, str) or self.method.upper() not in _METHODS:
            raise ConfigError("method", self.method, f"must be one of {', '.join(_METHODS)}")
        s(self, "method", self.method.upper())
        if self.seed is not None:
            integer("seed", self.seed, minimum=0)
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError("name", self.name, "must be a string or None")
        s(self, "processes", integer("processes", self.processes, minimum=1))
        s(self, "loop", check_loop(self.loop))
        if self.client not in CLIENTS:
            raise ConfigError(
                "client", self.client, f"must be one of {', '.join(map(repr, CLIENTS))}"
            )
        self._check_requests(options)
        if not isinstance(self.polite, bool):
            raise ConfigError("polite", self.polite, "must be True or False")
        if self.polite and not _READING_PLAIN_DATA.get():
            check_polite(self)  # and again when a run starts, with its processes

    def _check_requests(self, options: Mapping[str, Mapping[str, Any]]) -> None:
        """What the requests carry (:mod:`ratelab.experiment.request_options`)."""
        s = object.__setattr__
        s(self, "request", check_request(self.request, processes=self.processes))
        s(self, "headers", check_headers("headers", self.headers))
        s(self, "auth", check_auth(self.auth))
        s(self, "record_headers", check_record_headers(self.record_headers))
        opts = {}
        for path, o in options.items():
            if path not in self.endpoints:  # e.g. replace(endpoints=...) dropped the path
                continue
            checked = check_endpoint_options(path, o, methods=_METHODS)
            if checked:
                opts[path] = checked
        s(self, "endpoint_options", opts)
        for path in self.endpoints:
            o = opts.get(path, {})
            own_body = "json" in o or "data" in o
            check_body(
                f"endpoints[{path!r}]." if own_body else "",
                o.get("method", self.method),
                o.get("json") if own_body else self.json,
                o.get("data") if own_body else self.data,
            )

    def __repr__(self) -> str:
        """The fields, with secrets (``auth``, secret header values) redacted."""
        plain = self.to_dict()
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("headers", "auth", "endpoint_options", "request"):
                value = plain.get(f.name, value) if f.name != "endpoint_options" else {
                    p: {**o, "headers": redact_headers(o.get("headers"))} if "headers" in o else o
                    for p, o in value.items()
                }  # fmt: skip
            parts.append(f"{f.name}={value!r}")
        return f"Experiment({', '.join(parts)})"

    @property
    def label(self) -> str:
        """The name in tables and legends: ``name`` if given, else the strategy's repr."""
        return self.name or repr(self.strategy)

    @property
    def target_url(self) -> str:
        """The base URL (the same as ``target``)."""
        return self.target

    def replace(self, **changes: Any) -> Experiment:
        """A copy with some fields changed (validated like the original)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Plain data (JSON/TOML-friendly); :meth:`from_dict` reads it back. Secrets
        (``auth``, secret header values) are ``"<redacted>"`` unless ``redact=False`` (for
        handing the Experiment to a child process, never for files)."""
        return {
            "target": self.target,
            "endpoints": dict(self.endpoints),  # type: ignore[arg-type]
            "requests": self.requests,
            "workers": self.workers,
            "think_time": self.think_time.to_dict() if self.think_time is not None else None,
            "strategy": self.strategy.to_dict(),
            "arrivals": self.arrivals.to_dict() if self.arrivals is not None else None,
            "timeout_s": self.timeout_s,
            "method": self.method,
            "seed": self.seed,
            "name": self.name,
            "polite": self.polite,
            "processes": self.processes,
            "loop": self.loop,
            "client": self.client,
            **self._requests_to_dict(redact=redact),
        }

    def _requests_to_dict(self, *, redact: bool) -> dict[str, Any]:
        """The request fields that differ from their defaults (older files lack them)."""
        out: dict[str, Any] = {}
        if self.cost is not None:
            out["cost"] = self.cost.to_dict()  # type: ignore[union-attr]
        if self.request is not None:
            out["request"] = request_to_plain(self.request)
        if self.headers is not None:
            out["headers"] = redact_headers(self.headers) if redact else dict(self.headers)
        if self.json is not None:
            out["json"] = self.json
        if self.data is not None:
            out["data"] = self.data if isinstance(self.data, str) else dict(self.data)
        if self.auth is not None:
            out["auth"] = redact_auth(self.auth) if redact else list(self.auth)
        if self.record_headers:
            out["record_headers"] = list(self.record_headers)
        if self.endpoint_options:  # in the endpoints table: {path: {weight, method, ...}}
            endpoints = out["endpoints"] = dict(self.endpoints)  # type: ignore[arg-type]
            for path, o in self.endpoint_options.items():
                o = dict(o)
                if redact and "headers" in o:
                    o["headers"] = redact_headers(o["headers"])
                endpoints[path] = {"weight": self.endpoints[path], **o}  # type: ignore[index]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        """Build from plain data (a saved result or a TOML file); same validation."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                unknown[0], data[unknown[0]], f"is not a field; valid: {sorted(known)}"
            )
        token = _READING_PLAIN_DATA.set(True)  # polite: checked when a run starts
        try:
            return cls(**dict(data))
        finally:
            _READING_PLAIN_DATA.reset(token)

    def to_script(self) -> str:
        """This experiment as a standalone Python script (plain aiohttp + aiolimiter +
        asyncio, no ratelab import): the queue, the workers, the strategy's gates, the
        connector's caps, timeouts, retries. ``print(exp.to_script())`` to copy it; see
        :mod:`ratelab.experiment.script`. A strategy a plain script cannot express
        (``Adaptive``, ``SharedRateLimit``, a custom one) raises ConfigError naming it."""
        from ratelab.experiment.script import to_script

        return to_script(self)
