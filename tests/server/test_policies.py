"""Tests of ratelab.server.policies: the rate-limit algorithms on hand-picked timestamps
(no clock, no server), their headers, the policy descriptions and their validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratelab.errors import ConfigError
from ratelab.server.policies import (
    ALGORITHMS,
    Decision,
    Faults,
    FixedWindowLimiter,
    GCRALimiter,
    Limiter,
    ServerRateLimit,
    SlidingWindowLimiter,
    TokenBucketLimiter,
    as_faults,
    as_rate_limits,
    parse_rate_limit,
    rate_limit_headers,
)


def run(limiter: Limiter, times: list[float]) -> list[tuple[bool, int, float, float]]:
    out = []
    for t in times:
        d = limiter.decide(t)
        out.append((d.allowed, d.remaining, d.reset_s, d.retry_after_s))
    return out


def approx(rows: list[tuple[bool, int, float, float]]) -> list[object]:
    """Exact booleans and counts; times to 1e-12 (0.05 is not a binary fraction)."""
    return [(a, r, pytest.approx(reset, abs=1e-12), pytest.approx(retry, abs=1e-12))
            for a, r, reset, retry in rows]  # fmt: skip


# --- fixed window ----------------------------------------------------------------------------


def test_fixed_window_counts_then_denies_until_the_window_ends() -> None:
    lim = FixedWindowLimiter(3, 1.0)
    assert run(lim, [0.0, 0.1, 0.2, 0.3, 0.99, 1.0, 1.5]) == approx(
        [
            (True, 2, 1.0, 0.0),
            (True, 1, 0.9, 0.0),
            (True, 0, 0.8, 0.0),
            (False, 0, 0.7, 0.7),
            (False, 0, 0.01, 0.01),
            (True, 2, 1.0, 0.0),  # a new window opens at 1.0, ends at 2.0
            (True, 1, 0.5, 0.0),
        ]
    )


def test_fixed_window_opens_with_the_first_request_not_on_a_clock_grid() -> None:
    lim = FixedWindowLimiter(2, 1.0)
    assert run(lim, [0.5, 1.25, 1.375, 1.5, 10.25, 10.5, 10.75]) == [
        (True, 1, 1.0, 0.0),  # the window is [0.5, 1.5)
        (True, 0, 0.25, 0.0),
        (False, 0, 0.125, 0.125),
        (True, 1, 1.0, 0.0),  # [1.5, 2.5)
        (True, 1, 1.0, 0.0),  # idle: the next window opens at 10.25
        (True, 0, 0.75, 0.0),
        (False, 0, 0.5, 0.5),
    ]


def test_fixed_window_lets_twice_the_limit_through_across_a_boundary() -> None:
    # the known weakness: 0.9 and 1.0 are in different windows, so 5 requests pass in 0.1 s
    decisions = run(FixedWindowLimiter(3, 1.0), [0.0, 0.9, 0.9, 1.0, 1.0, 1.0])
    assert [d[0] for d in decisions] == [True] * 6


# --- sliding window (exact log) ------------------------------------------------------------


def test_sliding_window_counts_the_last_window_s_exactly() -> None:
    lim = SlidingWindowLimiter(3, 1.0)
    assert run(lim, [0.0, 0.5, 0.9, 0.95, 1.0, 1.2, 1.5, 2.6]) == approx(
        [
            (True, 2, 1.0, 0.0),
            (True, 1, 1.0, 0.0),
            (True, 0, 1.0, 0.0),
            (False, 0, 0.95, 0.05),  # full until 0.0 leaves at 1.0; empty at 1.9
            (True, 0, 1.0, 0.0),  # 0.0 stopped counting at exactly 1.0
            (False, 0, 0.8, 0.3),  # 0.5 leaves at 1.5; the newest (1.0) at 2.0
            (True, 0, 1.0, 0.0),
            (True, 2, 1.0, 0.0),  # 0.9, 1.0 and 1.5 have all left
        ]
    )


def test_sliding_window_does_not_let_a_boundary_burst_through() -> None:
    allowed = [d[0] for d in run(SlidingWindowLimiter(3, 1.0), [0.0, 0.9, 0.9, 1.0, 1.0, 1.0])]
    assert allowed == [True, True, True, True, False, False]


def test_rejected_requests_do_not_count() -> None:
    lim = SlidingWindowLimiter(1, 1.0)
    assert [lim.decide(t).allowed for t in [0.0, 0.5, 0.75, 1.0]] == [True, False, False, True]


# --- token bucket --------------------------------------------------------------------------


def test_token_bucket_bursts_then_refills_at_limit_per_window() -> None:
    lim = TokenBucketLimiter(2, 1.0)  # 2 tokens, 2 tokens per second
    assert run(lim, [0.0, 0.0, 0.0, 0.25, 0.5, 2.0, 100.0, 100.0, 100.0]) == [
        (True, 1, 0.5, 0.0),  # 1 token left; full again in 0.5 s
        (True, 0, 1.0, 0.0),
        (False, 0, 1.0, 0.5),
        (False, 0, 0.75, 0.25),  # half a token: a whole one in 0.25 s
        (True, 0, 1.0, 0.0),
        (True, 1, 0.5, 0.0),  # refilled to 2, never more
        (True, 1, 0.5, 0.0),
        (True, 0, 1.0, 0.0),
        (False, 0, 1.0, 0.5),
    ]


def test_token_bucket_thirds_are_not_lost_to_rounding() -> None:
    lim = TokenBucketLimiter(3, 1.0)  # a token every 1/3 s
    assert [lim.decide(0.0).allowed for _ in range(4)] == [True, True, True, False]
    d = lim.decide(1 / 3)
    assert (d.allowed, d.remaining) == (True, 0)
    assert [lim.decide(t).remaining for t in (1.0, 1.0)] == [1, 0]


# --- GCRA ------------------------------------------------------------------------------------


def test_gcra_allows_a_burst_of_limit_then_one_per_emission_interval() -> None:
    lim = GCRALimiter(2, 1.0)  # T = 0.5 s, burst of 2
    assert lim.interval_s == 0.5
    assert run(lim, [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0]) == [
        (True, 1, 0.5, 0.0),  # TAT = 0.5
        (True, 0, 1.0, 0.0),  # TAT = 1.0
        (False, 0, 1.0, 0.5),  # would make TAT 1.5 > now + 1.0: retry at TAT - 1.0 = 0.5
        (False, 0, 0.75, 0.25),
        (True, 0, 1.0, 0.0),  # TAT = 1.5
        (False, 0, 0.75, 0.25),
        (True, 0, 1.0, 0.0),  # TAT = 2.0
        (True, 1, 0.5, 0.0),  # TAT = 2.5: idle since 1.0, so another may pass now
    ]


def test_gcra_with_an_emission_interval_that_is_not_a_binary_fraction() -> None:
    lim = GCRALimiter(3, 1.0)  # T = 1/3
    assert [lim.decide(0.0).remaining for _ in range(3)] == [2, 1, 0]
    d = lim.decide(0.0)
    assert not d.allowed and d.retry_after_s == pytest.approx(1 / 3)
    assert lim.decide(1 / 3).allowed
    assert not lim.decide(1 / 3).allowed
    assert lim.decide(1.0).remaining == 1


# --- all algorithms ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_peek_changes_nothing(algorithm: str) -> None:
    lim = ServerRateLimit(2, 1.0, algorithm=algorithm).build()
    assert [lim.peek(0.0).remaining for _ in range(5)] == [1] * 5
    assert [lim.decide(0.0).allowed for _ in range(3)] == [True, True, False]
    assert lim.peek(0.0) == lim.decide(0.0)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_clock_reading_from_the_past_counts_as_the_latest(algorithm: str) -> None:
    lim = ServerRateLimit(1, 1.0, algorithm=algorithm).build()
    assert lim.decide(5.0).allowed
    assert lim.decide(4.0) == lim.peek(5.0)
    assert not lim.decide(4.0).allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_large_monotonic_readings(algorithm: str) -> None:
    # time.monotonic() can be ~1e6 s; float steps there are ~1e-10 s, far below EPS_S
    lim = ServerRateLimit(4, 0.1, algorithm=algorithm).build()
    t0 = 1_234_567.891
    assert [lim.decide(t0).allowed for _ in range(5)] == [True] * 4 + [False]
    assert lim.decide(t0 + 0.1).allowed


# reference models on integer milliseconds (no float boundaries): what each algorithm means
gaps_ms = st.lists(st.integers(0, 400), min_size=1, max_size=60)


def times_of(gaps: list[int]) -> list[int]:
    out, t = [], 0
    for g in gaps:
        t += g
        out.append(t)
    return out


@given(st.integers(1, 5), st.integers(1, 1000), gaps_ms)
def test_sliding_window_matches_its_definition(limit: int, window_ms: int, gaps: list[int]) -> None:
    lim, allowed = SlidingWindowLimiter(limit, window_ms / 1000), []
    for t in times_of(gaps):
        expected = sum(1 for a in allowed if t - a < window_ms) < limit
        assert lim.decide(t / 1000).allowed == expected
        if expected:
            allowed.append(t)


@given(st.integers(1, 5), st.integers(1, 1000), gaps_ms)
def test_fixed_window_matches_its_definition(limit: int, window_ms: int, gaps: list[int]) -> None:
    lim, start, count = FixedWindowLimiter(limit, window_ms / 1000), None, 0
    for t in times_of(gaps):
        if start is None or t >= start + window_ms:
            start, count = t, 0
        expected = count < limit
        count += expected
        assert lim.decide(t / 1000).allowed == expected


@given(st.integers(1, 5), st.integers(1, 250), gaps_ms)
def test_gcra_admits_exactly_what_the_token_bucket_admits(
    limit: int, interval_ms: int, gaps: list[int]
) -> None:
    window_s = limit * interval_ms / 1000
    bucket, gcra = TokenBucketLimiter(limit, window_s), GCRALimiter(limit, window_s)
    for t in times_of(gaps):
        a, b = bucket.decide(t / 1000), gcra.decide(t / 1000)
        assert (a.allowed, a.remaining) == (b.allowed, b.remaining)
        assert a.retry_after_s == pytest.approx(b.retry_after_s, abs=1e-9)
        assert a.reset_s == pytest.approx(b.reset_s, abs=1e-9)


# --- headers -----------------------------------------------------------------------------------


def test_headers_when_allowed() -> None:
    assert rate_limit_headers(3, Decision(True, 2, 0.7, 0.0)) == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "1",
    }


@pytest.mark.parametrize(
    ("retry_after_s", "seconds", "ms"),
    [
        (0.7, "1", "700"),
        (0.0001, "1", "1"),  # at least 1 s (RFC 9110 delta-seconds; 0 would invite a spin)
        (2.5, "3", "2500"),
        (2.0000000001, "2", "2000"),  # float noise above an integer is not a whole second
        (1.1 - 0.1, "1", "1000"),  # 1.0000000000000002
        (60.0, "60", "60000"),
    ],
)
def test_headers_when_denied(retry_after_s: float, seconds: str, ms: str) -> None:
    headers = rate_limit_headers(10, Decision(False, 0, retry_after_s, retry_after_s))
    assert headers["Retry-After"] == seconds
    assert headers["X-Retry-After-Ms"] == ms
    assert headers["RateLimit-Reset"] == seconds
    assert headers["RateLimit-Remaining"] == "0" and headers["RateLimit-Limit"] == "10"


# --- descriptions, parsing, validation -----------------------------------------------------


def test_server_rate_limit_builds_fresh_limiters_and_reads_like_code() -> None:
    spec = ServerRateLimit(20, 1.0, algorithm="sliding_window")
    assert repr(spec) == "ServerRateLimit(20, 1.0, algorithm='sliding_window')"
    assert repr(ServerRateLimit(5, 0.5)) == "ServerRateLimit(5, 0.5)"
    assert repr(ServerRateLimit(5, routes="/get")) == "ServerRateLimit(5, 1.0, routes='/get')"
    assert (
        repr(ServerRateLimit(5, 2, algorithm="gcra", routes=["/get", "/status/*"]))
        == "ServerRateLimit(5, 2.0, algorithm='gcra', routes=['/get', '/status/*'])"
    )
    a, b = spec.build(), spec.build()
    assert isinstance(a, SlidingWindowLimiter) and a is not b
    assert repr(a) == "SlidingWindowLimiter(20, 1.0)"
    assert ServerRateLimit(5, routes="/get") == ServerRateLimit(5, 1, routes=("/get",))
    built = {a: type(ServerRateLimit(1, algorithm=a).build()) for a in ALGORITHMS}
    assert built == {
        "fixed_window": FixedWindowLimiter,
        "sliding_window": SlidingWindowLimiter,
        "token_bucket": TokenBucketLimiter,
        "gcra": GCRALimiter,
    }


def test_routes_match_paths_and_prefixes() -> None:
    everything = ServerRateLimit(1)
    assert everything.applies_to("/get") and everything.applies_to("/anything/x")
    some = ServerRateLimit(1, routes=["/get", "/status/*"])
    assert some.applies_to("/get") and some.applies_to("/status/500")
    assert not some.applies_to("/get/x") and not some.applies_to("/uuid")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/1s", ServerRateLimit(20, 1.0)),
        ("20/s", ServerRateLimit(20, 1.0)),
        (" 20 / 1.5s ", ServerRateLimit(20, 1.5)),
        ("20/2", ServerRateLimit(20, 2.0)),
        ("100/1m:sliding_window", ServerRateLimit(100, 60.0, algorithm="sliding_window")),
        ("100/min", ServerRateLimit(100, 60.0)),
        ("5/500ms:gcra", ServerRateLimit(5, 0.5, algorithm="gcra")),
        ("3600/1h:token_bucket", ServerRateLimit(3600, 3600.0, algorithm="token_bucket")),
    ],
)
def test_parse_rate_limit(text: str, expected: ServerRateLimit) -> None:
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize(
    ("text", "parameter"),
    [
        ("20", "rate_limit"),
        ("fast", "rate_limit"),
        ("20/1x", "rate_limit"),
        ("20/", "rate_limit"),
        ("0/1s", "ServerRateLimit(limit)"),
        ("20/0s", "ServerRateLimit(window_s)"),
        ("20/1s:leaky", "ServerRateLimit(algorithm)"),
    ],
)
def test_parse_rate_limit_errors(text: str, parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rate_limit(text)
    assert info.value.parameter == parameter


def test_as_rate_limits() -> None:
    a, b = ServerRateLimit(100, 60), ServerRateLimit(2, routes="/uuid")
    assert as_rate_limits(None) == ()
    assert as_rate_limits(a) == (a,)
    assert as_rate_limits([a, "2/1s"]) == (a, ServerRateLimit(2, 1.0))
    assert as_rate_limits((a, b)) == (a, b)
    assert as_rate_limits([]) == ()
    assert as_rate_limits([b.to_dict(), {"limit": 3}]) == (b, ServerRateLimit(3))
    assert b.to_dict() == {"limit": 2, "window_s": 1.0, "algorithm": "fixed_window",
                           "routes": ["/uuid"], "unit": "requests", "name": None}  # fmt: skip
    for bad in (5, [a, 5], {"limit": 5, "per": 1}, {"window_s": 1}):
        with pytest.raises(ConfigError) as info:
            as_rate_limits(bad)
        assert info.value.parameter == "rate_limit"


@pytest.mark.parametrize(
    ("args", "kwargs", "parameter"),
    [
        ((0,), {}, "ServerRateLimit(limit)"),
        ((1.5,), {}, "ServerRateLimit(limit)"),
        (("3",), {}, "ServerRateLimit(limit)"),
        ((True,), {}, "ServerRateLimit(limit)"),
        ((3, 0), {}, "ServerRateLimit(window_s)"),
        ((3, -1.0), {}, "ServerRateLimit(window_s)"),
        ((3, float("inf")), {}, "ServerRateLimit(window_s)"),
        ((3, "1s"), {}, "ServerRateLimit(window_s)"),
        ((3,), {"algorithm": "leaky_bucket"}, "ServerRateLimit(algorithm)"),
        ((3,), {"algorithm": None}, "ServerRateLimit(algorithm)"),
        ((3,), {"routes": "get"}, "ServerRateLimit(routes)"),
        ((3,), {"routes": []}, "ServerRateLimit(routes)"),
        ((3,), {"routes": [1]}, "ServerRateLimit(routes)"),
        ((3,), {"routes": 5}, "ServerRateLimit(routes)"),
    ],
)
def test_server_rate_limit_validation(
    args: tuple[object, ...], kwargs: dict[str, object], parameter: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ServerRateLimit(*args, **kwargs)  # type: ignore[arg-type]
    assert info.value.parameter == parameter


def test_algorithm_error_lists_the_four_algorithms() -> None:
    with pytest.raises(ConfigError, match="fixed_window, sliding_window, token_bucket, gcra"):
        ServerRateLimit(3, algorithm="leaky")


@pytest.mark.parametrize(
    "cls", [FixedWindowLimiter, SlidingWindowLimiter, TokenBucketLimiter, GCRALimiter]
)
def test_limiter_validation_names_the_class(cls: type[Limiter]) -> None:
    with pytest.raises(ConfigError) as info:
        cls(0, 1.0)
    assert info.value.parameter == f"{cls.__name__}(limit)"
    with pytest.raises(ConfigError) as info:
        cls(1, 0)
    assert info.value.parameter == f"{cls.__name__}(window_s)"


# --- faults ------------------------------------------------------------------------------------


def test_faults_repr_and_defaults() -> None:
    assert repr(Faults()) == "Faults()"
    assert not Faults().active
    f = Faults(error_rate=0.3, seed=1)
    assert repr(f) == "Faults(error_rate=0.3, seed=1)" and f.active
    assert (
        repr(Faults(0.1, 502, 0.2, 0.05))
        == "Faults(error_rate=0.1, status=502, reset_rate=0.2, stall_rate=0.05)"
    )
    assert Faults(error_rate=0.5, reset_rate=0.25, stall_rate=0.25).active  # sum 1 is fine
    assert as_faults(f.to_dict()) == f and as_faults(None) is None and as_faults(f) is f
    assert as_faults({"stall_rate": 0.5}) == Faults(stall_rate=0.5)
    for bad in (0.1, {"rate": 0.1}):
        with pytest.raises(ConfigError) as info:
            as_faults(bad)
        assert info.value.parameter == "faults"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"error_rate": 1.5}, "Faults(error_rate)"),
        ({"error_rate": -0.1}, "Faults(error_rate)"),
        ({"error_rate": float("nan")}, "Faults(error_rate)"),
        ({"reset_rate": 2}, "Faults(reset_rate)"),
        ({"stall_rate": "0.1"}, "Faults(stall_rate)"),
        (
            {"error_rate": 0.6, "reset_rate": 0.3, "stall_rate": 0.2},
            "Faults(error_rate + reset_rate + stall_rate)",
        ),
        ({"status": 200}, "Faults(status)"),
        ({"status": 600}, "Faults(status)"),
        ({"status": 500.0}, "Faults(status)"),
        ({"seed": -1}, "Faults(seed)"),
        ({"seed": "x"}, "Faults(seed)"),
    ],
)
def test_faults_validation(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        Faults(**kwargs)  # type: ignore[arg-type]
    assert info.value.parameter == parameter
