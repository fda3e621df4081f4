"""rl.probe: a server's limit, window and algorithm family from what it says and does.

Exact on the virtual clock (SimulatedServers); against real LocalServers on 127.0.0.1 the
same 10% bounds hold with room to spare: the probe's timing errors are a round trip plus
the loop's timer lateness (a few ms on a loaded 2-core machine) against a 1 s window, 100 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random

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
    # what the README quotes: exact limit, window within 0.5%, 2 x limit + 6 requests
    assert p.limit == limit and _close(p.window_s, window_s, 0.005), p
    assert p.requests <= 2 * limit + 6
    for name in ("limit", "window_s", "algorithm"):
        assert p.findings[name].confidence == "measured"
    window = p.findings["window_s"]
    assert "opened before" not in window.evidence  # a fresh server: the first window counts
    if p.algorithm != "token_bucket":  # bracketed (send times: blurred by a round trip)
        assert window.low <= window_s * 1.005 and window.high >= window_s * 0.995, window
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
    assert p.requests <= 3 * limit + 17  # the automatic budget: burst + 2 x limit + 16
    assert not p.observations["retry_after_s"].notna().any()


def test_budget_spent_before_the_check_keeps_what_was_found() -> None:
    srv = rl.LocalServer(rate_limit=rl.ServerRateLimit(10, 1.0), headers=None)
    p = probe(srv, virtual=True, budget=23)  # burst 11, return 1, classify 9 + 1: 1 left
    assert p.requests == 23
    assert p.limit == 10 and _close(p.window_s, 1.0)
    assert p.algorithm is None and "budget (23 requests)" in p.findings["algorithm"].evidence


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
@pytest.mark.parametrize("before", [11, 30])  # 11: the quota spent; 30: a whole probe before
def test_a_window_in_use_when_the_probe_begins(algorithm: str, before: int) -> None:
    """A probe right after other traffic. When the first request is refused the findings
    are estimates, saying why. A quota spent by one burst, or a fixed window part used
    (opened earlier), still ends with the whole limit (counted again in the window the
    probe opened) and window; a sliding log with earlier traffic spread over it can hide
    part of the quota (known, and said)."""
    srv = rl.LocalServer(rate_limit=rl.ServerRateLimit(10, 1.0, algorithm=algorithm), headers=None)
    sim, url = SimulatedServer(srv), "http://127.0.0.1:8080/get"

    async def twice() -> tuple[rl.Probe, rl.Probe]:
        first = await _probe(sim, url, before, False, 0.0, "virtual")
        return first, await _probe(sim, url, AUTO_BUDGET, True, 0.0, "virtual")

    first, p = run_virtual(twice())
    assert 11 <= first.requests <= before
    refused_first = p.observations["status"].iloc[0] == 429
    if refused_first:
        for name in ("limit", "window_s", "algorithm"):
            assert p.findings[name].confidence == "estimated"
            assert "in use when the probe began" in p.findings[name].evidence
    if (before, algorithm) == (30, "sliding_window"):  # the earlier probe's requests are
        assert refused_first  # spread over the log: this probe sees part of the quota
        return
    assert p.limit == 10 and _close(p.window_s, 1.0), p
    assert p.algorithm == algorithm, p


def test_probe_inside_a_running_loop_and_aprobe() -> None:
    """In a running loop (Jupyter's) probe() runs on a thread of its own; aprobe awaits."""
    import asyncio

    from ratelab.advice.probe import aprobe

    async def main() -> tuple[rl.Probe, rl.Probe, rl.Probe]:
        with rl.LocalServer(rate_limit=rl.ServerRateLimit(20, 2.0), headers="ietf") as srv:
            inside = probe(srv)
            awaited = await aprobe(srv.url + "/get")
        model = rl.LocalServer(rate_limit=rl.ServerRateLimit(5, 1.0), headers=None)
        return inside, awaited, await aprobe(model, virtual=True)

    inside, awaited, virtual = asyncio.run(main())
    assert (inside.limit, inside.window_s) == (awaited.limit, awaited.window_s) == (20, 2)
    assert (virtual.clock, virtual.limit, virtual.algorithm) == ("virtual", 5, "fixed_window")
    assert rl.probe is probe and rl.Probe is type(inside)


class _HeldUp(SimulatedServer):
    """Each request is held up 0-20 ms (seeded) between its stamp and the server: a loaded
    machine's scheduling, harsher than the real one (where the lateness is mostly before
    the stamp)."""

    def __init__(self, server: rl.LocalServer, seed: int) -> None:
        super().__init__(server)
        self.rng = random.Random(seed)

    async def send(self, row: int, method: str, url: str, request_id: str):  # type: ignore[override]
        await asyncio.sleep(self.rng.uniform(0.0, 0.02))
        return await super().send(row, method, url, request_id)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "token_bucket"])
def test_requests_held_up_on_the_way(algorithm: str, seed: int) -> None:
    srv = rl.LocalServer(rate_limit=rl.ServerRateLimit(20, 1.0, algorithm=algorithm), headers=None)
    url = "http://127.0.0.1:8080/get"
    p = run_virtual(_probe(_HeldUp(srv, seed), url, AUTO_BUDGET, True, 0.0, "virtual"))
    assert _close(p.limit, 20) and _close(p.window_s, 1.0), p
    assert p.algorithm == algorithm, p
