"""The polite guard (issue 17, item 1): which hosts are this machine (resolved, never by
the name alone), the requests that can go out, and the busiest second, bursts included,
every process together; each formula checked against the virtual clock.

No test here needs DNS: numeric forms resolve locally, and names go to a stand-in for
``socket.getaddrinfo``."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

import ratelab as rl
from ratelab.experiment import polite
from ratelab.experiment.experiment import Experiment, is_loopback
from ratelab.experiment.polite import busiest_second, requests_out

PUBLIC = "http://192.0.2.1:80"  # TEST-NET-1 (RFC 5737): documentation, never routed


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "0x7f000001", "2130706433", "127.1", "0177.0.0.1", "127.9.8.7", "[::1]",
     "[::ffff:127.0.0.1]", "localhost", "localhost.", "LOCALHOST", "foo.localhost"],
)  # fmt: skip
def test_every_form_of_this_machine_is_loopback(host: str) -> None:
    url = f"http://{host}:8080"
    assert is_loopback(url)
    Experiment(target=url, requests=5000)  # no limit at all: this machine is never limited


@pytest.mark.parametrize(
    "host", ["192.0.2.1", "0.0.0.0", "[::]", "[2001:db8::1]", "[::ffff:192.0.2.1]", "0xc0000201"]
)
def test_other_addresses_are_public(host: str) -> None:
    url = f"http://{host}:80"
    assert not is_loopback(url)
    with pytest.raises(rl.ConfigError, match="polite=False"):
        Experiment(target=url, requests=20)


@pytest.fixture(autouse=True)
def _fresh_resolutions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(polite, "_resolved", {})  # each test sees its own resolver


def test_a_host_is_resolved_once_for_many_experiments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[Any]:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.3", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for n in (10, 20, 30):  # a sweep builds one Experiment per point
        Experiment(target="http://box.internal:1", requests=n)
    assert calls == ["box.internal"]


def _resolver(table: dict[str, Any]) -> Any:
    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        answer = table.get(host)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, threading.Event):
            answer.wait()  # a resolver that never answers
            return []
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in answer]

    return getaddrinfo


def test_names_are_resolved_and_any_public_address_makes_them_public(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    never = threading.Event()
    monkeypatch.setattr(polite, "RESOLVE_TIMEOUT_S", 0.05)
    monkeypatch.setattr(
        socket, "getaddrinfo",
        _resolver({
            "box.internal": ["127.0.0.2", "::1"],
            "mixed.example": ["127.0.0.1", "192.0.2.7"],
            "localhost": ["192.0.2.9"],  # a hosts file that sends localhost elsewhere
            "failing.example": socket.gaierror(socket.EAI_AGAIN, "Temporary failure"),
            "hangs.example": never,
        }),
    )  # fmt: skip
    try:
        assert is_loopback("http://box.internal:1")
        for host in ("mixed.example", "localhost", "failing.example", "unknown.example",
                     "hangs.example"):  # fmt: skip
            assert not is_loopback(f"http://{host}:1"), host
            with pytest.raises(rl.ConfigError, match="is not this machine"):
                Experiment(target=f"http://{host}:1", requests=20)
        # an unknown localhost name stays this machine (RFC 6761): nothing can go elsewhere
        assert is_loopback("http://other.localhost:1")
    finally:
        never.set()


# ------------------------------------------------------------------ the issue's examples


@pytest.mark.parametrize(
    ("kwargs", "parameter", "numbers"),
    [
        ({"requests": 100, "strategy": rl.RateLimit(5), "processes": 4}, "strategy", "hold 36"),
        ({"requests": 100, "strategy": rl.RateLimit(100, period_s=20)}, "strategy", "hold 100"),
        ({"requests": 100, "strategy": rl.TokenBucket(5, burst=100)}, "strategy", "hold 100"),
        ({"requests": 100, "strategy": rl.SlidingWindow(100, window_s=20)}, "strategy", "hold 100"),
        ({"arrivals": rl.Constant(5), "strategy": rl.Retry(10)}, "requests",
         "are 200 (20 requests x 10 attempts)"),
        ({"requests": 100, "strategy": rl.Retry(max_attempts=5) + rl.RateLimit(1, period_s=0.2)},
         "requests", "are 500"),
        ({"strategy": rl.RateLimit(5)}, "strategy", "hold 9"),
        ({"arrivals": rl.Constant(5)}, "strategy", "hold 20"),
        ({"strategy": rl.Concurrency(1) + rl.ConnectionLimit(1)}, "strategy", "hold 20"),
        ({"strategy": rl.Adaptive(start_rate_per_s=1, max_rate_per_s=10)}, "strategy", "hold 10"),
        ({"strategy": rl.RateLimit(1, period_s=0.2), "processes": 2}, "strategy", "hold 10"),
    ],
)  # fmt: skip
def test_the_issues_examples_are_refused(
    kwargs: dict[str, Any], parameter: str, numbers: str
) -> None:
    kwargs = {"requests": 20, "workers": 8, **kwargs}  # 8 workers: room for 4 processes
    with pytest.raises(rl.ConfigError) as info:
        Experiment(target=PUBLIC, **kwargs)
    message = str(info.value)
    assert info.value.parameter == parameter
    assert numbers in message and "polite=False" in message
    assert ("busiest second" if parameter == "strategy" else "can go out") in message
    Experiment(target=PUBLIC, polite=False, **kwargs)  # the opt-out still works


@pytest.mark.parametrize(
    "strategy",
    [rl.RateLimit(1, period_s=0.2), rl.RateLimit(2), rl.TokenBucket(3, burst=2),
     rl.SlidingWindow(5), rl.SlidingWindow(2, window_s=0.5), rl.Adaptive(1, 1, 5),
     rl.SharedRateLimit(5), rl.RateLimit(1, period_s=0.2) + rl.Retry(5)],
)  # fmt: skip
def test_modest_strategies_are_allowed(strategy: rl.Strategy) -> None:
    exp = Experiment(target=PUBLIC, requests=20, workers=4, strategy=strategy)
    assert busiest_second(exp, processes=1)[0] <= 5
    assert requests_out(exp) <= 100


def test_a_shared_limit_is_shared_by_the_processes_and_few_requests_are_few() -> None:
    shared = Experiment(target=PUBLIC, requests=20, workers=8, processes=4,
                        strategy=rl.SharedRateLimit(5))  # fmt: skip
    assert busiest_second(shared, processes=4)[0] == 5
    # five requests in all cannot make a second of more than five
    Experiment(target=PUBLIC, requests=5, strategy=rl.Retry(1))
    assert busiest_second(Experiment(target=PUBLIC, requests=5), processes=1)[0] == 5


def test_saved_plain_data_loads_and_the_run_start_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """from_dict (a saved Result, a TOML file) does not resolve or refuse: the run does,
    before the Engine exists and before any process starts."""
    from ratelab.client import engine, processes

    data = Experiment(target=PUBLIC, requests=20, strategy=rl.RateLimit(5), polite=False).to_dict()
    exp = Experiment.from_dict({**data, "polite": True})  # an older file's experiment
    built: list[object] = []
    monkeypatch.setattr(engine.Engine, "__init__", lambda *a, **k: built.append(a))
    monkeypatch.setattr(processes, "_run_fleet", lambda *a, **k: built.append(a))
    with pytest.raises(rl.ConfigError, match="busiest second could hold 9"):
        rl.run(exp, progress=False)
    with pytest.raises(rl.ConfigError, match="busiest second could hold 18"):
        processes.run_processes(exp, processes=2, progress=False)
    ok = Experiment(target=PUBLIC, requests=20, workers=4, strategy=rl.RateLimit(1, period_s=0.2))
    with pytest.raises(rl.ConfigError, match="busiest second could hold 10"):
        rl.run(ok, processes=2, progress=False)  # the Experiment alone passes; the run not
    with pytest.raises(rl.ConfigError, match="busiest second could hold 10"):
        processes.run_processes(ok, processes=2, progress=False)
    assert built == []  # refused before anything could be sent


# ------------------------------------------------------------------ formulas vs the clock

FAST = rl.LocalServer(latency=rl.Fixed(0.001), seed=1)


@pytest.mark.parametrize(
    ("strategy", "exact"),
    [
        (rl.RateLimit(5), True),
        (rl.RateLimit(100, period_s=20), True),
        (rl.RateLimit(1, period_s=0.2), True),
        (rl.RateLimit(3, period_s=0.5), True),
        (rl.RateLimit(2.5, period_s=0.7), True),
        (rl.TokenBucket(5, burst=100), True),
        (rl.TokenBucket(4.5, burst=2), True),
        (rl.SlidingWindow(100, window_s=20), True),
        (rl.SlidingWindow(3, window_s=0.7), True),
        (rl.SlidingWindow(4, window_s=0.5), True),
        (rl.Adaptive(start_rate_per_s=5, max_rate_per_s=5), True),
        (rl.Adaptive(start_rate_per_s=1, min_rate_per_s=1, max_rate_per_s=7.5), False),
        (rl.SharedRateLimit(5), True),
        (rl.RateLimit(5) + rl.Retry(4, backoff_s=0), True),
        (rl.RateLimit(5) + rl.TokenBucket(2, burst=1), True),
    ],
)  # fmt: skip
@pytest.mark.parametrize("clients", [1, 3])
def test_the_bound_holds_on_the_virtual_clock(
    strategy: rl.Strategy, exact: bool, clients: int
) -> None:
    """The simulated busiest second (summary's max_sent_1s: half-open windows, every
    attempt, every client) is <= the bound, and equal for the bucket limiters (the
    worst case is the start: a full bucket, then the refill)."""
    if clients > 1 and isinstance(strategy, rl.Adaptive) and not exact:
        pytest.skip("the climb to max_rate_per_s takes longer than this run")
    server = FAST
    if "Retry" in repr(strategy):  # every attempt fails: retries pass the guards again
        server = rl.LocalServer(latency=rl.Fixed(0.001), seed=1, faults=rl.Faults(error_rate=1.0))
    exp = Experiment(target="http://127.0.0.1:8080", requests=300, workers=60,
                     strategy=strategy, seed=1)  # fmt: skip
    result = rl.simulate(exp, server, clients=clients, progress=False)
    seen = int(rl.summary(result).iloc[0]["max_sent_1s"])
    bound, _ = busiest_second(exp, processes=clients)
    assert seen <= bound
    if exact:
        assert seen == bound, (seen, bound)


def test_open_loop_arrivals_are_no_bound_a_backlog_goes_out_at_once() -> None:
    """Why arrivals alone are refused: Constant(5) with 3 workers and a server whose
    latency varies (Exponential, mean 0.5 s) sends 10 in one second on the virtual clock,
    as a backlog clears; so the bound without a rate-limiting part is the whole run."""
    exp = Experiment(target="http://127.0.0.1:8080", requests=100, workers=3,
                     arrivals=rl.Constant(5), seed=1)  # fmt: skip
    server = rl.LocalServer(latency=rl.Exponential(0.5), seed=1)
    seen = int(rl.summary(rl.simulate(exp, server, progress=False)).iloc[0]["max_sent_1s"])
    assert seen == 10 > 5
    assert busiest_second(exp, processes=1)[0] == 100
