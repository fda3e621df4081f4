"""The four algorithms charge an amount (a request's tokens) exactly, refund part of it,
and a client that waits what the headers advertise is always admitted; the two header
bugs of issue 14 (GCRA's remaining at large clock values, the token bucket's tolerance in
tokens) stay fixed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelab.protocol.header_reading import read_headers, retry_after_s
from ratelab.protocol.header_styles import STYLES, format_headers
from ratelab.protocol.quota import Quota
from ratelab.server.policies import (
    ALGORITHMS,
    ConcurrencyLimiter,
    FixedWindowLimiter,
    GCRALimiter,
    Limiter,
    ServerRateLimit,
    SlidingWindowLimiter,
    TokenBucketLimiter,
)

LIMITERS = {
    "fixed_window": FixedWindowLimiter,
    "sliding_window": SlidingWindowLimiter,
    "token_bucket": TokenBucketLimiter,
    "gcra": GCRALimiter,
}


# --- the two bugs ----------------------------------------------------------------------------


def test_gcra_remaining_does_not_skip_at_large_clock_values() -> None:
    lim = GCRALimiter(1000, 1.0)
    assert [lim.decide(5e6).remaining for _ in range(10)] == list(range(999, 989, -1))


def test_slow_token_bucket_is_not_early_by_milliseconds() -> None:
    lim = TokenBucketLimiter(1, 3600.0)  # one per hour
    assert lim.decide(0.0).allowed
    refused = lim.decide(3600.0 - 0.003)  # was admitted: 1e-6 tokens = 3.6 ms
    assert not refused.allowed
    headers = format_headers(None, [], now_epoch_s=0.0, retry_after_s=refused.retry_after_s)
    assert headers["X-Retry-After-Ms"] == "3"
    assert not lim.peek(3600.0 - 0.0001).allowed
    assert lim.decide(3600.0 - 0.003 + 0.003).allowed


def test_fast_token_bucket_admits_a_retry_after_the_advertised_milliseconds() -> None:
    lim = TokenBucketLimiter(1000, 1.0)
    for _ in range(1000):
        assert lim.decide(0.0).allowed
    t = 0.0010009 - 0.001  # 0.9 us less than a token short of 1 ms
    refused = lim.decide(t)
    assert not refused.allowed
    headers = format_headers("ietf", [], now_epoch_s=0.0, retry_after_s=refused.retry_after_s)
    assert headers["X-Retry-After-Ms"] == "1"
    assert lim.decide(t + 0.001).allowed  # was refused: 0.9e-6 s short = 0.0009 tokens


# --- amounts, exactly ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_amount_is_charged_whole(algorithm: str) -> None:
    lim = LIMITERS[algorithm](1000, 60.0)
    assert [lim.decide(0.0, 400).remaining for _ in range(2)] == [600, 200]
    d = lim.decide(0.0, 300)  # 200 left: refused, nothing charged
    assert (d.allowed, d.remaining) == (False, 200)
    assert lim.peek(0.0, 200).allowed and lim.decide(0.0, 200).remaining == 0
    assert lim.decide(0.0, 0).allowed  # a free request passes even on an empty quota


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_amount_above_the_limit_never_passes(algorithm: str) -> None:
    lim = LIMITERS[algorithm](100, 1.0)
    d = lim.decide(0.0, 101)
    assert not d.allowed and d.retry_after_s == math.inf and d.remaining == 100


@pytest.mark.parametrize(
    ("algorithm", "retry_s"),
    [("fixed_window", 60.0), ("sliding_window", 60.0), ("token_bucket", 18.0), ("gcra", 18.0)],
)
def test_retry_after_an_amount_is_when_that_much_is_back(algorithm: str, retry_s: float) -> None:
    lim = LIMITERS[algorithm](1000, 60.0)
    assert lim.decide(0.0, 1000).allowed
    d = lim.decide(0.0, 300)
    assert d.retry_after_s == pytest.approx(retry_s)  # buckets refill 300 in 18 s
    assert not lim.decide(retry_s - 0.01, 300).allowed
    assert lim.decide(retry_s, 300).allowed


def test_sliding_window_waits_for_enough_of_the_oldest_to_expire() -> None:
    lim = SlidingWindowLimiter(10, 10.0)
    for t, a in ((0.0, 3), (1.0, 3), (2.0, 4)):
        assert lim.decide(t, a).allowed
    d = lim.decide(5.0, 5)  # needs 5 back: 3 at t=10, 3 more at 11
    assert d.retry_after_s == pytest.approx(6.0)
    assert not lim.decide(10.5, 5).allowed and lim.decide(11.0, 5).allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_refund_gives_back_the_unused_part(algorithm: str) -> None:
    lim = LIMITERS[algorithm](1000, 60.0)
    assert lim.decide(0.0, 800).remaining == 200
    lim.refund(1.0, 500, charged_at=0.0)  # used 300 of the 800 declared
    d = lim.peek(1.0, 1)
    assert 699 <= d.remaining <= 716  # buckets also refilled 1 s worth (16.7)
    assert lim.decide(1.0, 690).allowed


def test_concurrency_limiter_counts_requests_in_progress() -> None:
    lim = ConcurrencyLimiter(2)
    assert [lim.decide(0.0).allowed for _ in range(3)] == [True, True, False]
    lim.release()
    assert lim.decide(5.0).allowed and not lim.peek(5.0).allowed


def test_server_rate_limit_units_and_names() -> None:
    assert ServerRateLimit(5, unit="concurrent").build().limit == 5
    assert isinstance(ServerRateLimit(5, unit="concurrent").build(), ConcurrencyLimiter)
    r = ServerRateLimit(30_000, 60, unit="tokens", name="tpm")
    assert repr(r) == "ServerRateLimit(30000, 60.0, unit='tokens', name='tpm')"
    assert ServerRateLimit(**r.to_dict()) == r


# --- waiting what the headers say is enough -------------------------------------------------


def _advertised_waits(lim: Limiter, now: float, amount: float, style: str | None) -> list[float]:
    """Every wait the headers of a refusal at ``now`` advertise, as a client reads them."""
    d = lim.peek(now, amount)
    q = Quota("q", lim.limit, d.remaining, d.reset_s, lim.window_s, "requests")
    h = format_headers(style, [q], now_epoch_s=1e9 + now, retry_after_s=d.retry_after_s)
    waits = [float(h["Retry-After"]), retry_after_s(h, now_epoch_s=1e9 + now)]
    waits += [g.reset_s for g in read_headers(h, now_epoch_s=1e9 + now) if g.reset_s]
    return [w for w in waits if w is not None]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(ALGORITHMS),
    st.integers(1, 2000),
    st.floats(0.001, 7200),
    st.lists(st.floats(0, 1), min_size=1, max_size=30),
    st.floats(0, 1e7),
    st.sampled_from([*STYLES, None]),
)
def test_a_client_waiting_the_advertised_time_is_admitted(
    algorithm: str, limit: int, window_s: float, gaps: list[float], t0: float, style: str | None
) -> None:
    lim = LIMITERS[algorithm](limit, window_s)
    now = t0
    for gap in gaps:
        now += gap * window_s / limit * 3
        if lim.decide(now).allowed:
            continue
        for wait in _advertised_waits(lim, now, 1, style):
            probe = LIMITERS[algorithm](limit, window_s)  # replay to the refusal, then wait
            replay = t0
            for g in gaps:
                replay += g * window_s / limit * 3
                if replay >= now:
                    break
                probe.decide(replay)
            assert probe.peek(now + wait).allowed, (wait, style)
