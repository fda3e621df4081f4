"""Vendor-shaped servers (rl.profiles) and several quotas with costs, simulated on the
virtual clock: the SimulatedServer charges, refuses, releases and answers headers as the
LocalServer does, and two simulations of the same thing give equal frames."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import ratelab as rl
from ratelab.errors import ConfigError
from ratelab.protocol.header_reading import read_headers
from ratelab.protocol.quota import COST_HEADER
from ratelab.server.decide import cost_error
from ratelab.simulation.runner import SIMULATION_EPOCH_S

URL = "http://127.0.0.1:8080"  # never contacted


def _sim(exp: rl.Experiment, server: rl.LocalServer) -> rl.Result:
    return rl.simulate(exp, server, progress=False, cpu_s=0.0, late_s=0.0, connect_s=0.0)


def _exp(cost: int, **kwargs: Any) -> rl.Experiment:
    kwargs.setdefault("seed", 1)
    kwargs.setdefault("headers", {COST_HEADER: str(cost)})
    return rl.Experiment(target=URL, **kwargs)


def test_openai_profile_token_quota_binds_before_the_request_quota() -> None:
    # 60 RPM, 6,000 TPM, 500 tokens a request: the token bucket holds 12 requests' worth,
    # then refills 100 tokens/s = one request per 5 s; the request bucket one per second
    server = rl.LocalServer(profile=rl.profiles.openai(rpm=60, tpm=6000))
    r = _sim(_exp(500, requests=30, workers=1), server)
    assert r.df.status.tolist() == [200] * 12 + [429] * 18  # 30 requests in ~20 ms
    log = r.server_log
    assert (log.cost_declared == 500).all()
    assert log.cost_actual.tolist() == [500] * 12 + [0] * 18
    h = r.headers
    tokens = h[h.name == "x-ratelimit-remaining-tokens"].value.astype(int).tolist()
    assert tokens[:12] == [6000 - 500 * (i + 1) for i in range(12)]
    assert set(h[h.name == "retry-after"].value) == {"5"}  # 500 tokens at 100/s


def test_a_client_that_waits_the_retry_after_gets_through() -> None:
    server = rl.LocalServer(profile=rl.profiles.openai(rpm=60, tpm=6000))
    exp = _exp(500, requests=20, workers=1, strategy=rl.Retry(max_attempts=3, backoff_s=0.001))
    r = _sim(exp, server)
    final = r.df.sort_values("attempt").groupby("request_id").status.last()
    assert (final == 200).all()  # every refused request waited its Retry-After (5 s) once
    assert r.df.attempt.max() == 2


def test_github_profile_secondary_concurrency_limit_and_primary_reset() -> None:
    server = rl.LocalServer(
        profile=rl.profiles.github(per_hour=50, concurrent=4, points_per_minute=900),
        latency=rl.Fixed(1.0),
    )
    r = _sim(_exp(1, requests=10, workers=10), server)
    # ten at once, four slots: four pass, six refused by the concurrency quota (secondary:
    # with Retry-After), none charged to the hour
    assert sorted(r.df.status.tolist()) == [200] * 4 + [429] * 6
    h = r.headers
    assert (h[h.name == "retry-after"].value == "1").sum() == 6
    ok = set(r.df.request_id[r.df.status == 200])
    used = h[(h.name == "x-ratelimit-used") & h.request_id.isin(ok)].value.astype(int)
    assert sorted(used.tolist()) == [1, 2, 3, 4]
    resets = h[h.name == "x-ratelimit-reset"].value.astype(int)
    assert set(resets) == {int(SIMULATION_EPOCH_S) + 3600 + 1}  # the wall clock is fixed


def test_github_primary_refusal_has_no_retry_after() -> None:
    server = rl.LocalServer(profile=rl.profiles.github(per_hour=3))
    r = _sim(_exp(1, requests=5, workers=1), server)
    assert r.df.status.tolist() == [200, 200, 200, 429, 429]
    h = r.headers
    assert "retry-after" not in set(h.name)
    refused = h[(h.request_id == 4) & (h.name == "x-ratelimit-remaining")].value
    assert refused.tolist() == ["0"]


def test_anthropic_profile_headers_read_back() -> None:
    server = rl.LocalServer(profile=rl.profiles.anthropic(rpm=50, input_tpm=4000, output_tpm=2000))
    r = _sim(_exp(1000, requests=3, workers=1), server)
    assert r.df.status.tolist() == [200, 200, 429]  # output tokens: 2 x 1000
    row0 = r.headers[r.headers.request_id == 0]
    quotas = read_headers(dict(zip(row0.name, row0.value, strict=True)),
                          now_epoch_s=SIMULATION_EPOCH_S)  # fmt: skip
    assert {q.name: q.remaining for q in quotas} == {
        "requests": 49, "input-tokens": 3000, "output-tokens": 1000}  # fmt: skip


def test_two_simulations_of_the_same_thing_give_equal_frames() -> None:
    server = rl.LocalServer(profile=rl.profiles.github(per_hour=20), seed=2,
                            latency=rl.Uniform(0.01, 0.2))  # fmt: skip
    a = _sim(_exp(1, requests=40, workers=4), server)
    b = _sim(_exp(1, requests=40, workers=4), server)
    pd.testing.assert_frame_equal(a.df, b.df)
    pd.testing.assert_frame_equal(a.headers, b.headers)
    pd.testing.assert_frame_equal(a.server_log, b.server_log)


def test_a_malformed_cost_is_a_400_in_simulation_too() -> None:
    server = rl.LocalServer(rate_limit=[rl.ServerRateLimit(100, 60, unit="tokens")])
    r = _sim(_exp(1, requests=2, workers=1, headers={COST_HEADER: "x"}), server)
    assert r.df.status.tolist() == [400, 400]
    assert r.server_log.decision.tolist() == ["bad_request"] * 2
    assert (r.df.bytes == len(cost_error("x"))).all()  # the LocalServer's body


def test_profiles_refuse_bad_input_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"profiles\.openai\(rpm\)"):
        rl.profiles.openai(tpm=1000)
    with pytest.raises(ConfigError, match=r"profiles\.anthropic\(output_tpm\)"):
        rl.profiles.anthropic(output_tpm=-1)
    with pytest.raises(ConfigError, match="profile"):
        rl.LocalServer(profile=rl.profiles.github(), rate_limit="5/1s")
    with pytest.raises(ConfigError, match="profile"):
        rl.LocalServer(profile={"rpm": 5})  # type: ignore[arg-type]


def test_a_profile_in_another_header_style() -> None:
    server = rl.LocalServer(profile=rl.profiles.openai(rpm=60, tpm=6000), headers="ietf")
    assert "headers='ietf'" in repr(server)
    r = _sim(_exp(500, requests=2, workers=1), server)
    h = r.headers
    assert h[(h.request_id == 1) & (h.name == "ratelimit")].value.tolist() == [
        '"requests";r=58;t=2, "tokens";r=5000;t=10']  # fmt: skip
