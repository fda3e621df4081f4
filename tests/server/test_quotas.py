"""Several quotas at once, atomically, with a request's cost: on the Policy's decision
objects (exact), and against a real LocalServer on 127.0.0.1 (counts, statuses, headers
that read back to the server's state)."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelab.errors import ConfigError
from ratelab.experiment.distributions import Fixed, Uniform
from ratelab.protocol.header_reading import read_headers, retry_after_s
from ratelab.protocol.header_styles import STYLES
from ratelab.protocol.quota import COST_HEADER
from ratelab.server.decide import Policy, ServiceLatency, parse_cost
from ratelab.server.local import LocalServer
from ratelab.server.policies import ALGORITHMS, ServerRateLimit

RPM = ServerRateLimit(10, 60.0, name="rpm")
TPM = ServerRateLimit(1000, 60.0, unit="tokens", name="tpm")


def policy(*limits: ServerRateLimit, style: str | None = "ietf", actual: float | None = None):
    draws = None
    if actual is not None:
        draws = ServiceLatency(Fixed(actual), np.random.default_rng(0))
    return Policy(limits, None, 503, None, headers=style, actual=draws)


# --- the decision objects, exactly -------------------------------------------------------


def test_a_request_refused_by_the_token_quota_is_not_charged_to_the_request_quota() -> None:
    p = policy(RPM, TPM)
    (_, rpm, _), (_, tpm, _) = p.limits
    first = p.admit("/get", 0.0, 600, 1e9)
    assert first is not None and first.allowed
    second = p.admit("/get", 0.0, 600, 1e9)  # 400 tokens left: refused by tpm only
    assert second is not None and not second.allowed and second.charges == []
    assert rpm.peek(0.0).remaining == 8  # 10 - the first request - this probe
    assert tpm.peek(0.0, 400).remaining == 0  # exactly 400 left: only the first was charged
    assert second.headers["RateLimit"] == '"rpm";r=9;t=60, "tpm";r=400;t=60'
    assert second.headers["Retry-After"] == "60"
    content_type, body = second.body  # type: ignore[misc]
    assert content_type == "application/problem+json"
    assert json.loads(body)["violated-policies"] == ["tpm"]
    third = p.admit("/get", 0.0, 400, 1e9)  # fits exactly: charged to both
    assert third is not None and third.allowed
    assert rpm.peek(0.0).remaining == 7 and not tpm.peek(0.0, 1).allowed


def test_a_request_refused_by_the_request_quota_is_not_charged_to_the_token_quota() -> None:
    p = policy(ServerRateLimit(1, 60.0, name="rpm"), TPM)
    assert p.admit("/get", 0.0, 10, 1e9).allowed  # type: ignore[union-attr]
    refused = p.admit("/get", 0.0, 10, 1e9)
    assert refused is not None and not refused.allowed
    assert p.limits[1][1].peek(0.0, 990).allowed and not p.limits[1][1].peek(0.0, 991).allowed


def test_a_cost_above_a_quota_never_passes_and_says_no_retry_after() -> None:
    p = policy(RPM, TPM)
    refused = p.admit("/get", 0.0, 1001, 1e9)
    assert refused is not None and not refused.allowed
    assert "Retry-After" not in refused.headers  # waiting would not help


def test_the_unused_part_is_refunded_when_the_response_ends() -> None:
    p = policy(RPM, TPM, actual=0.25)
    adm = p.admit("/get", 0.0, 800, 1e9)
    assert adm is not None and adm.cost_actual() == 200
    tpm = p.limits[1][1]
    assert not tpm.peek(1.0, 800).allowed
    p.finish(adm, 1.0)
    assert tpm.peek(1.0, 800).allowed and not tpm.peek(1.0, 801).allowed


def test_a_concurrent_quota_counts_requests_in_progress() -> None:
    p = policy(ServerRateLimit(2, unit="concurrent"), style="ietf")
    a, b = p.admit("/get", 0.0, 1, 1e9), p.admit("/get", 0.0, 1, 1e9)
    c = p.admit("/get", 0.0, 1, 1e9)
    assert a.allowed and b.allowed and not c.allowed  # type: ignore[union-attr]
    assert c.headers["RateLimit"] == '"concurrent";r=0'  # type: ignore[union-attr]
    p.finish(a, 0.5)  # type: ignore[arg-type]
    assert p.admit("/get", 0.5, 1, 1e9).allowed  # type: ignore[union-attr]


def test_the_cost_header() -> None:
    assert parse_cost(None) == 1 and parse_cost("500") == 500 and parse_cost(" 0 ") == 0
    assert [parse_cost(v) for v in ("-1", "1.5", "abc", "", "١٢")] == [None] * 5


def test_bad_configuration_names_it() -> None:
    with pytest.raises(ConfigError, match=r"ServerRateLimit\(unit\)"):
        ServerRateLimit(5, unit="bytes")
    with pytest.raises(ConfigError, match="rate_limit"):
        LocalServer(rate_limit=[RPM, ServerRateLimit(5, name="rpm")])
    with pytest.raises(ConfigError, match="headers"):
        LocalServer(headers="ietf-99")
    with pytest.raises(ConfigError, match=r"ServerRateLimit\(limit\)"):
        ServerRateLimit(-3)


# --- a real LocalServer -----------------------------------------------------------------


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_token_quota_charges_each_request_its_cost_header() -> None:
    with LocalServer(rate_limit=[ServerRateLimit(100, 60.0), TPM]) as s:
        got = [get(f"{s.url}/get", {COST_HEADER: c})[0] for c in ("300",) * 5 + ("100",)]
        no_header = get(f"{s.url}/get")[0]  # costs 1: nothing left
        log = s.log()
    assert got == [200, 200, 200, 429, 429, 200]  # 900 used, then 100 fits exactly
    assert no_header == 429
    assert log["cost_declared"].tolist() == [300] * 5 + [100, 1]
    assert log["cost_actual"].tolist() == [300, 300, 300, 0, 0, 100, 0]
    assert log["decision"].tolist() == ["ok"] * 3 + ["rate_limited"] * 2 + ["ok", "rate_limited"]


def test_a_malformed_cost_is_a_400_with_a_clear_body_and_logged() -> None:
    with LocalServer(rate_limit=[TPM]) as s:
        status, _, body = get(f"{s.url}/get", {COST_HEADER: "lots"})
        log = s.log()
    assert status == 400 and b"X-Ratelab-Cost" in body and b"'lots'" in body
    assert log[["status", "decision", "cost_declared"]].values.tolist() == [
        [400, "bad_request", -1]
    ]


def test_the_refund_reaches_the_log_and_the_quota() -> None:
    with LocalServer(rate_limit=[TPM], actual_cost=Uniform(0.2, 0.4), seed=3) as s:
        got = [get(f"{s.url}/get", {COST_HEADER: "600"})[0] for _ in range(3)]
        log = s.log()
    # 600 charged at arrival, 60-80 % of it refunded at the end: the next 600 fit each time
    assert got == [200, 200, 200]
    assert (log["cost_declared"] == 600).all()
    assert log["cost_actual"].between(120, 240).all() and log["cost_actual"].nunique() == 3


@pytest.mark.asyncio
async def test_a_concurrent_quota_on_a_real_server() -> None:
    import asyncio

    import aiohttp

    limits = [ServerRateLimit(2, unit="concurrent")]
    with LocalServer(rate_limit=limits, latency=Fixed(0.3)) as s:
        async with aiohttp.ClientSession() as session:

            async def one() -> int:
                async with session.get(f"{s.url}/get") as r:
                    await r.read()
                    return r.status

            first = await asyncio.gather(*(one() for _ in range(5)))
            then = await asyncio.gather(*(one() for _ in range(2)))  # the slots were released
    assert sorted(first) == [200, 200, 429, 429, 429] and then == [200, 200]


SERVED = [ServerRateLimit(10, 60.0, name="requests"),
          ServerRateLimit(1000, 60.0, unit="tokens", name="tokens")]  # fmt: skip


@pytest.mark.parametrize("style", [*STYLES, None])
def test_each_header_style_reads_back_to_the_servers_state(style: str | None) -> None:
    with LocalServer(rate_limit=SERVED, headers=style) as s:
        before = time.time()
        status, h, _ = get(f"{s.url}/get", {COST_HEADER: "300"})
        for _ in range(2):
            get(f"{s.url}/get", {COST_HEADER: "300"})
        refused, h429, body = get(f"{s.url}/get", {COST_HEADER: "300"})  # 100 left
    assert (status, refused) == (200, 429)
    got = {q.name: q for q in read_headers(h, now_epoch_s=before)}
    want = {"requests": 9, "tokens": 700}
    if style is None:
        assert got == {} and "Retry-After" in h429 and len(h429.keys() & {"RateLimit"}) == 0
        return
    if style == "ietf":
        assert {n: q.remaining for n, q in got.items()} == want
        assert {n: (q.limit, q.window_s, q.unit) for n, q in got.items()} == {
            "requests": (10, 60, "requests"), "tokens": (1000, 60, "tokens")}  # fmt: skip
        assert json.loads(body)["violated-policies"] == ["tokens"]
        assert h429["Content-Type"].startswith("application/problem+json")
    elif style in ("openai", "anthropic"):
        assert {n: q.remaining for n, q in got.items()} == want
    elif style == "ietf-06":  # the most restrictive: tokens at 70 %, requests at 90 %
        assert [(q.limit, q.remaining) for q in got.values()] == [(1000, 700)]
    else:  # github: the first (primary) quota
        assert [(q.name, q.limit, q.remaining) for q in got.values()] == [("requests", 10, 9)]
    for q in got.values():  # reset: the fixed window's 60 s, rounded up (absolute: +1 s)
        assert q.reset_s is not None and 59 <= q.reset_s <= 61.5
    wait = retry_after_s(h429, now_epoch_s=time.time())
    assert wait is not None and 55 < wait <= 60 and not math.isnan(wait)


def test_a_profile_on_a_real_server_answers_in_its_vendors_shape() -> None:
    from ratelab.server.profiles import github

    with LocalServer(profile=github(per_hour=2)) as s:
        got = [get(f"{s.url}/get") for _ in range(3)]
    assert [status for status, _, _ in got] == [200, 200, 429]
    h = got[0][1]
    assert (h["x-ratelimit-limit"], h["x-ratelimit-remaining"], h["x-ratelimit-used"]) == (
        "2", "1", "1")  # fmt: skip
    assert h["x-ratelimit-resource"] == "core"
    assert int(h["x-ratelimit-reset"]) - time.time() == pytest.approx(3600, abs=5)
    assert "Retry-After" not in got[2][1]  # the primary limit: wait for x-ratelimit-reset


def test_unnamed_limits_are_numbered_in_the_headers() -> None:
    p = policy(ServerRateLimit(5, 1.0), ServerRateLimit(50, 60.0), TPM, style="ietf")
    adm = p.admit("/get", 0.0, 1, 1e9)
    assert adm is not None
    assert adm.headers["RateLimit"].split(", ") == [
        '"requests";r=4;t=1', '"requests-2";r=49;t=60', '"tpm";r=999;t=60']  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(ALGORITHMS), st.sampled_from(ALGORITHMS),
    st.integers(1, 50), st.integers(100, 5000), st.floats(0.5, 120), st.floats(0.5, 120),
    st.lists(st.tuples(st.floats(0, 2), st.integers(0, 600)), min_size=1, max_size=40),
    st.sampled_from(["ietf", "ietf-06", "openai", "anthropic", None]),
)  # fmt: skip
def test_waiting_the_advertised_retry_after_admits_the_same_request(
    alg_r: str, alg_t: str, rpm: int, tpm: int, w_r: float, w_t: float,
    traffic: list[tuple[float, int]], style: str | None,
) -> None:  # fmt: skip
    p = policy(ServerRateLimit(rpm, w_r, algorithm=alg_r, name="r"),
               ServerRateLimit(tpm, w_t, algorithm=alg_t, unit="tokens", name="t"),
               style=style)  # fmt: skip
    now = 1e6
    for gap, cost in traffic:
        now += gap
        adm = p.admit("/get", now, cost, 1e9 + now)
        assert adm is not None
        if adm.allowed:
            continue
        wait = retry_after_s(adm.headers, now_epoch_s=1e9 + now)
        if cost > tpm:  # can never pass: no Retry-After at all
            assert wait is None
            continue
        assert wait is not None and wait > 0
        again = p.admit("/get", now + wait, cost, 1e9 + now + wait)
        assert again is not None and again.allowed, (now, wait, adm.headers)
        now += wait
