"""``rl.recommend``: which client numbers to use against a server's limit.

    rec = rl.recommend(rl.ServerRateLimit(30, 2.0), rl.Experiment(target=url, requests=200))
    rec                      # the best few, with simulated throughput, 429 rate, p99 wait
    rec.experiment           # the recommended Experiment: rl.run(rec.experiment)
    print(rec.to_script())   # as a plain aiohttp + aiolimiter script
    print(rec.to_snippet("httpx"))

The search runs in virtual time (:func:`ratelab.simulate`): the server's quotas give the
limit's throughput (requests per second: the tightest of ``limit / window_s`` over the
requests quotas, and over the tokens quotas divided by the workload's mean cost); each
client shape (a burst-free rate, a token bucket holding the server's burst, aiolimiter's
bursty ``AsyncLimiter(limit, window)``, a semaphore sized by Little's law, header pacing,
``AllOf`` for requests and tokens) is simulated at that rate and, if the server refuses any
request beyond what is allowed, bisected down to the fastest rate it refuses none at. A
simulation has ideal timers; a real loop wakes late, and a window opened by a late request
ends early for the requests after it, so the rate kept is ``window_s / (window_s +
slack_s)`` of the simulated one (``slack_s`` 50 ms by default): that is the margin, and
``Recommendation.why`` says it in words. ``Retry`` honouring ``Retry-After`` is added to
every configuration as the safety net.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ratelab._validate import positive_number
from ratelab.errors import ConfigError
from ratelab.experiment.distributions import Distribution, Fixed
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.strategies import (
    AllOf,
    Concurrency,
    ConnectionLimit,
    HeaderPacing,
    RateLimit,
    Retry,
    Strategy,
    TokenBucket,
)

if TYPE_CHECKING:
    import pandas as pd

    from ratelab.analysis.result import Result
    from ratelab.server.local import LocalServer
    from ratelab.server.policies import ServerRateLimit

__all__ = ["OBJECTIVES", "Candidate", "Recommendation", "recommend", "steady_throughput_per_s"]

#: What ``recommend`` can optimise: the most requests through per second, or (among the
#: configurations within 2% of the best throughput) the shortest p99 wait.
OBJECTIVES = ("max_throughput", "min_wait")
#: Bisection of the rate factor: in 0.95 .. 1 (5 steps: 0.16%), else in 0.7 .. 0.95.
_STEPS = 5
_NEAR = 0.95
_LOWEST = 0.7
#: The most requests one simulation of the sustained workload sends.
_MAX_SIM_REQUESTS = 2000
#: The safety net added to every configuration.
_RETRY = Retry(max_attempts=3)


def steady_throughput_per_s(result: Result | pd.DataFrame) -> float:
    """Successful requests per second over the run's steady part: the second half of the
    span of send times (a client's start-up burst, if any, and its first window lie in the
    first half). ``(n - 1) / (last - first)`` over the successful requests sent in it; NaN
    with fewer than two."""
    df = getattr(result, "df", result)
    sent = df["sent_s"].to_numpy()
    if len(sent) == 0:
        return float("nan")
    ok = (df["status"].to_numpy() >= 200) & (df["status"].to_numpy() < 400)
    lo, hi = float(sent.min()), float(sent.max())
    t = sorted(sent[ok & (sent >= (lo + hi) / 2)])
    if len(t) < 2 or t[-1] <= t[0]:
        return float("nan")
    return (len(t) - 1) / (t[-1] - t[0])


def _rate_429(df: pd.DataFrame) -> float:
    return float((df["status"] == 429).mean()) if len(df) else 0.0


def _p99_wait_s(df: pd.DataFrame) -> float:
    wait = (df["admitted_s"] - df["ready_s"]).dropna()
    return float(wait.quantile(0.99)) if len(wait) else float("nan")


@dataclass(frozen=True)
class Candidate:
    """One configuration tried: its ``shape`` (in words), the ``experiment`` (the workload
    with its strategy), and what the simulation gave: ``throughput_per_s`` (steady part),
    ``rate_429`` (share of attempts refused), ``p99_wait_s`` (client-side wait for the
    guards), whether ``to_script()`` can write it (``scriptable``), and a ``note``."""

    shape: str
    experiment: Experiment
    throughput_per_s: float
    rate_429: float
    p99_wait_s: float
    scriptable: bool
    note: str = ""
    safe: bool = True  # holds in the long run by construction (not only in this simulation)
    burst: bool = False  # starts with a burst: counts on the server's bucket being full

    @property
    def strategy(self) -> Strategy:
        return self.experiment.strategy


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` found: ``best`` (the top configurations, best first) and
    ``tried`` (every shape, as simulated), ``limit_per_s`` (the limit's throughput in
    requests per second), ``binding`` (the quota that sets it), ``margin`` (the share of
    the rate left unused) and ``why`` (in words), ``search_s`` (wall time of the search)."""

    best: tuple[Candidate, ...]
    tried: tuple[Candidate, ...]
    limit_per_s: float
    binding: str
    margin: float
    why: str
    objective: str
    max_429_rate: float
    search_s: float
    simulations: int

    @property
    def experiment(self) -> Experiment:
        """The recommended Experiment (the workload with the best strategy)."""
        return self.best[0].experiment

    @property
    def strategy(self) -> Strategy:
        return self.best[0].strategy

    @property
    def scriptable(self) -> Candidate | None:
        """The best configuration ``to_script()`` can write (the best allowed first), or None."""
        allowed = [c for c in self.tried if c.rate_429 <= self.max_429_rate]
        for c in (*self.best, *sorted(allowed, key=lambda c: -c.throughput_per_s)):
            if c.scriptable:
                return c
        return None

    def to_script(self) -> str:
        """The best *scriptable* configuration (:attr:`scriptable`) as a plain aiohttp +
        aiolimiter + asyncio script (:meth:`Experiment.to_script`); a ConfigError saying
        why when none is."""
        c = self.scriptable
        return (c or self.best[0]).experiment.to_script()

    def to_snippet(self, library: str = "aiohttp") -> str:
        """Short pasteable code for the best configuration a snippet can say (the best
        allowed first; ``HeaderPacing`` or ``AllOf`` cannot be): ``"aiohttp"``, ``"httpx"``
        or ``"aiometer"`` (see :mod:`ratelab.advice.snippets`)."""
        from ratelab.advice.snippets import LIBRARIES, to_snippet

        if library not in LIBRARIES:
            raise ConfigError("library", library, f"must be one of {', '.join(LIBRARIES)}")
        allowed = [c for c in self.tried if c.rate_429 <= self.max_429_rate]
        first: ConfigError | None = None
        for c in (*self.best, *sorted(allowed, key=lambda c: -c.throughput_per_s)):
            try:
                return to_snippet(c.experiment, library=library)
            except ConfigError as e:
                first = first or e
        assert first is not None  # best is never empty
        raise first

    def table(self) -> list[tuple[str, str, str, str, str]]:
        """Rows of (shape, strategy, throughput/s, 429 rate, p99 wait s), best first, then
        the other shapes tried."""
        rows = []
        for c in self.best + tuple(c for c in self.tried if c not in self.best):
            rows.append(
                (c.shape, repr(c.strategy), f"{c.throughput_per_s:.2f}",
                 f"{c.rate_429:.1%}", f"{c.p99_wait_s:.3f}")
            )  # fmt: skip
        return rows

    def __repr__(self) -> str:
        lines = [
            f"Recommendation: {self.strategy!r}",
            f"  limit {self.limit_per_s:.3g}/s ({self.binding}); margin {self.margin:.1%}; "
            f"searched {self.simulations} simulations in {self.search_s:.1f} s",
        ]
        for i, (shape, strat, tput, r429, p99) in enumerate(self.table()):
            mark = "*" if i == 0 else " "
            lines.append(f" {mark} {shape:<24} {tput:>8}/s  429 {r429:>6}  p99 wait {p99} s")
            lines.append(f"     {strat}")
        lines.append("  " + self.why)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        head = "".join(
            f"<th>{h}</th>" for h in ("", "shape", "strategy", "throughput/s", "429", "p99 wait s")
        )
        body = "".join(
            "<tr>" + f"<td>{'★' if i == 0 else ''}</td>"
            + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>"
            for i, row in enumerate(self.table())
        )  # fmt: skip
        return (
            f"<div><b>Recommendation</b>: <code>{e(repr(self.strategy))}</code><br>"
            f"limit {self.limit_per_s:.3g}/s ({e(self.binding)}); margin {self.margin:.1%}; "
            f"{self.simulations} simulations in {self.search_s:.1f} s"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p>{e(self.why)}</p></div>"
        )


# -- the server, whatever form it comes in ------------------------------------------------


def _server_model(server_or_probe: object) -> LocalServer:
    """A LocalServer (never started) describing the server to simulate."""
    from ratelab.server.local import LocalServer
    from ratelab.server.policies import ServerRateLimit
    from ratelab.server.profiles import ServerModel

    s = server_or_probe
    if isinstance(s, LocalServer):
        return s
    if isinstance(s, ServerModel):
        return LocalServer(profile=s)
    limits = getattr(s, "rate_limits", s)  # a Probe: its inferred limits
    if isinstance(limits, ServerRateLimit):
        limits = [limits]
    if (
        isinstance(limits, Sequence)
        and limits
        and all(isinstance(x, ServerRateLimit) for x in limits)
    ):
        headers = getattr(s, "headers", None)
        if not isinstance(headers, str):
            headers = None
        return LocalServer(rate_limit=list(limits), headers=headers)
    raise ConfigError(
        "server_or_probe", s,
        "must be a rl.LocalServer, a server model (rl.profiles.openai(...)), a "
        "rl.ServerRateLimit or a list of them, or a Probe (rl.probe(...))",
    )  # fmt: skip


def _mean_cost(exp: Experiment) -> float:
    c = exp.cost
    if c is None:
        return 1.0
    if isinstance(c, Distribution):
        return max(1.0, float(c.mean_s))
    return max(1.0, float(c))


def _fixed_cost(exp: Experiment) -> bool:
    return exp.cost is None or isinstance(exp.cost, int | float | Fixed)


def _limit(
    quotas: Sequence[ServerRateLimit], cost: float
) -> tuple[float, ServerRateLimit | None, int | None]:
    """The limit's throughput (requests/s), the quota that sets it, the concurrent cap."""
    best, binding, cap = math.inf, None, None
    for q in quotas:
        if q.unit == "concurrent":
            cap = q.limit if cap is None else min(cap, q.limit)
            continue
        per_s = q.limit / q.window_s / (cost if q.unit == "tokens" else 1.0)
        if per_s < best:
            best, binding = per_s, q
    return best, binding, cap


# -- the search ---------------------------------------------------------------------------


class _Search:
    def __init__(
        self, server: LocalServer, workload: Experiment, max_429_rate: float, requests: int
    ) -> None:
        self.server, self.workload, self.max_429_rate = server, workload, max_429_rate
        self.requests = requests  # simulated: the workload, sustained over two windows
        self.simulations = 0

    def simulate(self, strategy: Strategy) -> tuple[Experiment, pd.DataFrame]:
        from ratelab.simulation.runner import simulate

        exp = self.workload.replace(strategy=strategy)
        self.simulations += 1
        sim = exp.replace(requests=self.requests)
        return exp, simulate(sim, self.server, progress=False).df

    def candidate(
        self, shape: str, strategy: Strategy, note: str = "", *, safe: bool = True,
        burst: bool = False,
    ) -> Candidate:  # fmt: skip
        from ratelab.experiment.script import SUPPORTED

        exp, df = self.simulate(strategy)
        scriptable = all(type(p) in SUPPORTED for p in strategy.parts) and all(
            getattr(p, "unit", "requests") == "requests" for p in strategy.parts
        )
        return Candidate(shape, exp, steady_throughput_per_s(df), _rate_429(df), _p99_wait_s(df),
                         scriptable and exp.cost is None, note, safe, burst)  # fmt: skip

    def fastest(self, make: Callable[[float], Strategy]) -> float | None:
        """The largest factor in [_LOWEST, 1] at which ``make(factor)`` is refused no more
        than allowed (bisection); None if even the lowest is."""

        def ok(f: float) -> bool:
            _, df = self.simulate(make(f))
            return _rate_429(df) <= self.max_429_rate

        if ok(1.0):
            return 1.0
        lo, hi = _NEAR, 1.0
        if not ok(_NEAR):
            if not ok(_LOWEST):
                return None
            lo, hi = _LOWEST, _NEAR
        for _ in range(_STEPS):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        return lo


def recommend(
    server_or_probe: object,
    workload: Experiment,
    *,
    objective: str = "max_throughput",
    max_429_rate: float = 0.0,
    top: int = 3,
    slack_s: float = 0.05,
) -> Recommendation:
    """Search client strategies and their numbers in virtual time for ``workload`` against
    the server (a :class:`~ratelab.LocalServer`, a server model from ``rl.profiles``, a
    :class:`~ratelab.ServerRateLimit` or a list of them, or a Probe's ``rate_limits``);
    return the ``top`` best (see the module docstring). ``workload``'s workers, endpoints,
    costs, arrivals and requests are kept; its strategy is replaced. ``objective``:
    ``"max_throughput"`` or ``"min_wait"``; ``max_429_rate``: the share of attempts the
    server may refuse (0: none); ``slack_s``: how late a real timer may wake (the margin)."""
    t_start = time.perf_counter()
    if not isinstance(workload, Experiment):
        raise ConfigError("workload", workload, "must be an rl.Experiment(...)")
    if objective not in OBJECTIVES:
        raise ConfigError("objective", objective, f"must be one of {', '.join(OBJECTIVES)}")
    max_429 = positive_number("max_429_rate", max_429_rate, allow_zero=True)
    if max_429 >= 1:
        raise ConfigError("max_429_rate", max_429_rate, "must be in [0, 1): a share of attempts")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError("top", top, "must be an integer >= 1")
    slack = positive_number("slack_s", slack_s, allow_zero=True)
    server = _server_model(server_or_probe)
    quotas = server.rate_limit
    cost = _mean_cost(workload)
    limit_per_s, binding, cap = _limit(quotas, cost)
    if binding is None:
        raise ConfigError(
            "server_or_probe", server_or_probe,
            "has no rate limit to recommend numbers for (only concurrent quotas, or none)",
        )  # fmt: skip
    window_s = binding.window_s
    factor = window_s / (window_s + slack)
    # sustained: the server's burst spent and two windows more, so what only a fresh
    # server's burst allows is seen refused
    in_units = cost if binding.unit == "tokens" else 1.0
    sustained = math.ceil(binding.limit / in_units + 2 * window_s * limit_per_s)
    sim_requests = max(workload.requests, min(sustained, _MAX_SIM_REQUESTS))
    covered = sim_requests >= sustained
    search = _Search(server, workload, max_429, sim_requests)
    caps: list[Strategy] = [ConnectionLimit(cap)] if cap is not None else []
    tokens = [q for q in quotas if q.unit == "tokens"]
    windowed = binding.algorithm in ("fixed_window", "sliding_window")
    tried: list[Candidate] = []

    def with_net(*parts: Strategy) -> Strategy:
        s = parts[0]
        for p in (*parts[1:], *caps, _RETRY):
            s = s + p
        return s

    def token_parts(f: float) -> list[Strategy]:
        if _fixed_cost(workload):
            return []  # a fixed cost: the request rate already holds the tokens quotas
        return [RateLimit(math.floor(q.limit * f), period_s=q.window_s, unit="tokens")
                for q in tokens]  # fmt: skip

    def shape(
        name: str, make: Callable[[float], Strategy], note: str, *, burst: bool = False
    ) -> None:
        f = search.fastest(make)
        if f is None:
            note += "; refused even at 70%"
            tried.append(search.candidate(name, make(_LOWEST), note, burst=burst))
            return
        tried.append(search.candidate(name, make(f * factor), note, burst=burst))

    def paced(gate: Callable[[float], Strategy]) -> Callable[[float], Strategy]:
        def make(f: float) -> Strategy:
            parts = token_parts(f)
            g = gate(limit_per_s * f)
            return with_net(AllOf(g, *parts) if parts else g)

        return make

    # 1. burst-free: ratelab's token bucket of one (booked at ideal times, so a late timer
    #    costs no rate), and aiolimiter's AsyncLimiter(1, 1/r) (a late wake-up is lost)
    shape("burst-free token bucket", paced(lambda r: TokenBucket(r, burst=1)),
          "one request every 1/r s, booked at ideal times: no window sees more")  # fmt: skip
    shape("burst-free rate", paced(lambda r: RateLimit(1, period_s=1 / r)),
          "aiolimiter's AsyncLimiter(1, 1/r): one request every 1/r s or later")  # fmt: skip
    # 2. a token bucket holding the server's own burst (bucket-like servers only)
    if not windowed and binding.unit == "requests":
        burst = max(1, math.floor(binding.limit * factor) - 1)
        shape("token bucket + burst", paced(lambda r: TokenBucket(r, burst=burst)),
              f"a burst of {burst}, then r/s: counts on the server's bucket being full "
              "(a fresh key, or idle for a window)", burst=True)  # fmt: skip
    # 3. the naive one: aiolimiter's AsyncLimiter(limit, window)
    if binding.unit == "requests":
        naive = with_net(RateLimit(binding.limit, period_s=binding.window_s))
        first_try = "the usual first try: a full bucket at the start"
        tried.append(search.candidate("AsyncLimiter(limit, window)", naive, first_try,
                                      safe=not windowed, burst=True))  # fmt: skip
    # 4. a semaphore sized by Little's law (needs a latency model): the rate follows latency
    if server.latency is not None and float(server.latency.mean_s) > 0:
        n = max(1, min(workload.workers, math.floor(limit_per_s * server.latency.mean_s)))
        tried.append(search.candidate(
            "semaphore (Little's law)", with_net(Concurrency(n)),
            f"n = rate x mean latency = {n}: the rate follows the latency", safe=False,
        ))  # fmt: skip
    # 5. header pacing (needs headers)
    if server.headers is not None:
        spread = "spreads the announced remaining quota to its reset"
        tried.append(search.candidate("header pacing", with_net(HeaderPacing(safety=0.05)), spread))

    allowed = [
        c for c in tried
        if c.rate_429 <= max_429 and not math.isnan(c.throughput_per_s) and (covered or c.safe)
    ]  # fmt: skip
    ranked = _rank(allowed, objective)
    best = tuple(ranked[:top]) or tuple(sorted(tried, key=lambda c: c.rate_429)[:1])
    margin = 1 - factor
    if covered:
        span = f"Each shape was simulated over {sim_requests} requests (the server's burst and "
        span += "two windows more)."
    else:
        span = (f"The simulation ({sim_requests} requests) does not reach two windows past the "
                "server's burst, so only shapes that hold by construction (no burst beyond the "
                "server's, no rate that follows latency) are ranked.")  # fmt: skip
    why = (
        f"The limit is {limit_per_s:.3g} requests/s ({_describe(binding, cost)}). {span} The "
        f"simulation has ideal timers; a real loop wakes late, and a window opened by a late "
        f"request ends early for the requests after it, so the rate kept is "
        f"{window_s:g}/({window_s:g}+{slack:g}) of the fastest refused nothing in simulation: "
        f"a margin of {margin:.1%} for timers up to {slack * 1000:.0f} ms late. Retry honouring "
        f"Retry-After is the safety net."
    )
    return Recommendation(
        best=best, tried=tuple(tried), limit_per_s=limit_per_s, binding=_describe(binding, cost),
        margin=margin, why=why, objective=objective, max_429_rate=max_429,
        search_s=time.perf_counter() - t_start, simulations=search.simulations,
    )  # fmt: skip


def _describe(q: ServerRateLimit, cost: float) -> str:
    what = q.name or q.unit
    text = f"{what}: {q.limit} {q.unit} per {q.window_s:g} s, {q.algorithm}"
    if q.unit == "tokens":
        text += f", at {cost:g} per request"
    return text


def _rank(cands: list[Candidate], objective: str) -> list[Candidate]:
    """Best first: throughput (ties within 2% go to the scriptable, then to one without a
    start-up burst, which counts on nothing about the server's state when it starts, then
    the faster), or for ``"min_wait"`` the shortest p99 wait among those within 2% of the
    best."""
    if not cands:
        return []
    top = max(c.throughput_per_s for c in cands)

    def key(c: Candidate) -> Any:
        near = c.throughput_per_s >= 0.98 * top
        if objective == "min_wait":
            return (not near, c.p99_wait_s, -c.throughput_per_s)
        return (not near, not c.scriptable, c.burst, -round(c.throughput_per_s, 6), c.p99_wait_s)

    return sorted(cands, key=key)
