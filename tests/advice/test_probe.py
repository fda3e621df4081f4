"""rl.probe: a server's limit, window and algorithm family from what it says and does.

Exact on the virtual clock (SimulatedServers); against real LocalServers on 127.0.0.1 the
same 10% bounds hold with room to spare: the probe's timing errors are a round trip plus
the loop's timer lateness (a few ms on a loaded 2-core machine) against a 1 s window, 100 ms.
"""

from __future__ import annotations

import itertools
import math

import pytest

import ratelab as rl
from ratelab.advice.probe import AUTO_BUDGET, FAMILY, _plan, _probe, probe
from ratelab.advice.probe_session import ProbeSession
from ratelab.errors import ConfigError
from ratelab.simulation.server import SimulatedServer
from ratelab.testing import run_virtual

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket", "gcra")


def _close(value: float | None, want: float, tolerance: float = 0.10) -> bool:
    return value is not None and abs(value - want) <= tolerance * want


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("limit", "window_s"), [(10, 1.0), (60, 60.0), (100, 10.0)])
def test_headerless_virtual(algorithm: str, limit: int, window_s: float) -> None:
    srv = rl.LocalServer(
        rate_limit=rl.ServerRateLimit(limit, window_s, algorithm=algorithm), headers=None
    )
    p = probe(srv, virtual=True)
    assert p.source == "behaviour" and p.clock == "virtual"
    assert _close(p.limit, limit), p
    assert _close(p.window_s, window_s), p
    assert p.algorithm == FAMILY[algorithm], p
    assert p.requests <= 3 * limit, p
    # what the README quotes: exact limit, window within 0.5%, 2 x limit + 5 (bucket: + 11)
    assert p.limit == limit and _close(p.window_s, window_s, 0.005), p
    assert p.requests <= (limit + 11 if p.algorithm == "token_bucket" else 2 * limit + 5)
    for name in ("limit", "window_s", "algorithm"):
        assert p.findings[name].confidence == "measured"
    (found,) = p.rate_limits
    assert found.limit == p.limit and found.algorithm == FAMILY[algorithm]


def test_observations_show_the_burst_and_the_refusal() -> None:
    srv = rl.LocalServer(rate_limit=rl.ServerRateLimit(10, 1.0), headers=None)
    p = probe(srv, virtual=True)
    obs = p.observations
    assert len(obs) == p.requests
    burst = obs[obs["phase"] == "burst"]
    assert list(burst["status"]) == [200] * 10 + [429]
    assert burst["retry_after_s"].iloc[-1] == pytest.approx(1.0, abs=0.01)
    assert (obs["sent_s"].diff().dropna() >= 0).all()
    text = repr(p)
    assert "limit=10 (measured)" in text and "fixed_window" in text
    assert "<table>" in p._repr_html_() and "measured" in p._repr_html_()


STYLES = ("ietf", "ietf-06", "openai", "anthropic", "github")


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_announced_limits_are_read_from_headers(style: str, algorithm: str) -> None:
    srv = rl.LocalServer(rate_limit=rl.ServerRateLimit(60, 60, algorithm=algorithm), headers=style)
    p = probe(srv, virtual=True)
    assert p.source == "headers"
    assert 1 <= p.requests <= 2
    assert p.limit == 60 and p.findings["limit"].confidence == "announced"
    assert p.unit == "requests"
    assert _close(p.window_s, 60.0), p
    want = "announced" if style == "ietf" else "estimated"
    assert p.findings["window_s"].confidence == want
    if algorithm in ("token_bucket", "gcra"):  # its reset grows by 1 s per request
        assert p.algorithm == "token_bucket"
    else:
        assert p.algorithm is None and p.findings["algorithm"].confidence == "unknown"


def test_a_profile_gives_every_announced_quota() -> None:
    p = probe(rl.LocalServer(profile=rl.profiles.openai(rpm=60, tpm=10_000)), virtual=True)
    units = {lim.unit: lim.limit for lim in p.rate_limits}
    assert units == {"requests": 60, "tokens": 10_000}
    assert p.limit == 60


def test_budget_bounds_the_requests() -> None:
    srv = rl.LocalServer(rate_limit=rl.ServerRateLimit(10, 1.0), headers=None)
    p = probe(srv, virtual=True, budget=5)
    assert p.requests == 5
    assert p.limit is None and p.findings["limit"].low == 5
    assert p.rate_limits == ()


def test_polite_gap_spaces_requests() -> None:
    srv = rl.LocalServer(rate_limit=rl.ServerRateLimit(100, 1.0), headers=None)

    async def go() -> list[float]:
        s = ProbeSession(SimulatedServer(srv), "http://127.0.0.1:8080/get", budget=6, gap_s=0.2)
        await s.open()
        for _ in range(6):
            await s.send("burst")
        await s.aclose()
        return [o.sent_s for o in s.observations]

    sent = run_virtual(go())
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.2 - 1e-9
    # and a public host gets the polite gap and budget by default
    _url, model, budget, _auto, gap_s = _plan("http://192.0.2.1/get", None, True, False, {})
    assert (model, budget, gap_s >= 0.2) == (None, 100, True)
    assert _plan("http://127.0.0.1:1/get", None, True, False, {})[4] == 0.0


def test_public_host_refused_before_any_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    import ratelab.client.transports as transports

    def no(*args: object, **kwargs: object) -> None:
        raise AssertionError("a transport was built")

    monkeypatch.setattr(transports, "transport_for", no)
    with pytest.raises(ConfigError) as e:
        probe("http://192.0.2.1/get", budget=500)
    assert e.value.parameter == "budget" and "polite=False" in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"target": "http://127.0.0.1:1/get", "budget": 0}, "budget"),
        ({"target": "http://127.0.0.1:1/get", "budget": 2.5}, "budget"),
        ({"target": "http://127.0.0.1:1/get", "budget": True}, "budget"),
        ({"target": "http:///get"}, "target"),
        ({"target": "ftp://127.0.0.1/x"}, "target"),
        ({"target": 42}, "target"),
        ({"target": "http://127.0.0.1:1/get", "speed": 3}, "speed"),
        ({"target": "http://127.0.0.1:1/get", "polite": "yes"}, "polite"),
        ({"target": "http://127.0.0.1:1/get", "virtual": True}, "virtual"),
        ({"target": rl.LocalServer()}, "target"),  # not started, not virtual
    ],
)
def test_bad_input(kwargs: dict[str, object], parameter: str) -> None:
    target = kwargs.pop("target")
    with pytest.raises(ConfigError) as e:
        probe(target, **kwargs)  # type: ignore[arg-type]
    assert e.value.parameter == parameter


def test_nothing_listening_is_three_failed_rows() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = probe(f"http://127.0.0.1:{port}/get")
    assert p.requests == 3
    assert set(p.observations["error"]) == {"ConnectionRefusedError"}
    assert p.limit is None and p.findings["limit"].confidence == "unknown"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_headerless_real_server(algorithm: str) -> None:
    limit, window_s = 20, 1.0
    with rl.LocalServer(
        rate_limit=rl.ServerRateLimit(limit, window_s, algorithm=algorithm), headers=None
    ) as srv:
        p = probe(srv)
    assert p.clock == "real"
    assert _close(p.limit, limit), p
    assert _close(p.window_s, window_s), p
    assert p.algorithm == FAMILY[algorithm], p
    assert p.requests <= 3 * limit
    assert not math.isnan(p.duration_s)


def test_announced_real_server() -> None:
    with rl.LocalServer(rate_limit=rl.ServerRateLimit(20, 1.0), headers="ietf") as srv:
        p = probe(srv.url + "/get")
    assert (p.limit, p.window_s, p.requests) == (20, 1, 2)


class _NoRetryAfter(SimulatedServer):
    """A SimulatedServer whose refusals carry no Retry-After at all (nor X-Retry-After-Ms)."""

    async def send(self, row: int, method: str, url: str, request_id: str):  # type: ignore[override]
        status, _, nbytes, headers = await super().send(row, method, url, request_id)
        if headers:
            headers = {k: v for k, v in headers.items() if "retry-after" not in k.lower()}
        return status, None, nbytes, headers


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("limit", "window_s"), [(10, 1.0), (60, 60.0), (100, 10.0)])
def test_no_retry_after_searches_and_still_finds_it(
    algorithm: str, limit: int, window_s: float
) -> None:
    """Without any hint the return is searched for (waits growing 1.25x, then a finer look
    inside the bracket): the same family and limit, the window within 10%, more requests."""
    srv = rl.LocalServer(
        rate_limit=rl.ServerRateLimit(limit, window_s, algorithm=algorithm), headers=None
    )
    url = "http://127.0.0.1:8080/get"
    p = run_virtual(_probe(_NoRetryAfter(srv), url, AUTO_BUDGET, True, 0.0, "virtual"))
    assert p.limit == limit, p
    assert _close(p.window_s, window_s), p
    assert p.algorithm == FAMILY[algorithm], p
    assert p.requests <= 3 * limit + 13  # the automatic budget: burst + 2 x limit + 12
    assert not p.observations["retry_after_s"].notna().any()


def test_budget_spent_in_the_split_burst_keeps_what_was_found() -> None:
    srv = rl.LocalServer(rate_limit=rl.ServerRateLimit(10, 1.0), headers=None)
    p = probe(srv, virtual=True, budget=15)  # burst 11, return 1, classify 1: then 2 left
    assert p.requests == 15
    assert p.limit == 10 and _close(p.window_s, 1.0)
    assert p.algorithm is None and "budget (15 requests)" in p.findings["algorithm"].evidence
