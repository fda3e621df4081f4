"""Every header style written by the server reads back to the quotas it announced, up to
the style's rounding (remaining down, resets and windows up), and real vendor samples read
to the right numbers."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratelab.protocol.header_reading import (
    detect_styles,
    parse_duration,
    read_headers,
    retry_after_s,
)
from ratelab.protocol.header_styles import (
    PROBLEM_CONTENT_TYPE,
    QUOTA_EXCEEDED,
    STYLES,
    format_headers,
    go_duration,
    problem_body,
)
from ratelab.protocol.quota import Quota

NOW = 1_764_590_000.25  # a wall clock reading with a fraction: absolute resets round up

REQUESTS = Quota("requests", 60, 12.7, 0.2501, 60.0, "requests")
TOKENS = Quota("tokens", 30_000, 1234.5, 17.0001, 60.0, "tokens")
CONCURRENT = Quota("concurrent", 100, 97, None, None, "concurrent")


def test_ietf_round_trip_one_item_per_quota() -> None:
    h = format_headers("ietf", [REQUESTS, TOKENS, CONCURRENT], now_epoch_s=NOW)
    assert h["RateLimit-Policy"] == (
        '"requests";q=60;w=60, "tokens";q=30000;qu="tokens";w=60, '
        '"concurrent";q=100;qu="concurrent-requests"'
    )
    assert h["RateLimit"] == '"requests";r=12;t=1, "tokens";r=1234;t=18, "concurrent";r=97'
    assert read_headers(h, now_epoch_s=NOW) == [
        Quota("requests", 60, 12, 1, 60, "requests"),
        Quota("tokens", 30_000, 1234, 18, 60, "tokens"),
        Quota("concurrent", 100, 97, None, None, "concurrent"),
    ]


def test_ietf_06_announces_the_most_restrictive_quota() -> None:
    h = format_headers("ietf-06", [REQUESTS, TOKENS], now_epoch_s=NOW)
    assert h == {"RateLimit-Limit": "30000", "RateLimit-Remaining": "1234", "RateLimit-Reset": "18"}
    assert read_headers(h, now_epoch_s=NOW) == [Quota("ratelimit", 30_000, 1234, 18)]


def test_openai_round_trip_with_go_durations() -> None:
    h = format_headers("openai", [REQUESTS, TOKENS], now_epoch_s=NOW)
    assert h["x-ratelimit-reset-requests"] == "251ms"
    assert h["x-ratelimit-reset-tokens"] == "17.001s"
    got = read_headers(h, now_epoch_s=NOW)
    assert [(q.name, q.limit, q.remaining, q.unit) for q in got] == [
        ("requests", 60, 12, "requests"),
        ("tokens", 30_000, 1234, "tokens"),
    ]
    assert got[0].reset_s == pytest.approx(0.251) and got[1].reset_s == pytest.approx(17.001)


def test_anthropic_round_trip_with_rfc3339_resets() -> None:
    qs = [REQUESTS, Quota("input-tokens", 40_000, 39_000, 3.0, 60, "tokens"), TOKENS]
    h = format_headers("anthropic", qs, now_epoch_s=NOW)
    assert h["anthropic-ratelimit-requests-reset"] == "2025-12-01T11:53:21Z"  # NOW + 0.25 up
    got = read_headers(h, now_epoch_s=NOW)
    assert [(q.name, q.limit, q.remaining, q.unit) for q in got] == [
        ("requests", 60, 12, "requests"),
        ("tokens", 30_000, 1234, "tokens"),
        ("input-tokens", 40_000, 39_000, "tokens"),
    ]
    # whole seconds of the wall clock, rounded up: never earlier than the true reset
    assert [q.reset_s for q in got] == [0.75, 17.75, 3.75]


def test_github_round_trip_announces_the_first_quota() -> None:
    core = Quota("core", 5000, 4990, 1800.4, 3600, "requests")
    h = format_headers("github", [core, CONCURRENT], now_epoch_s=NOW)
    assert h == {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4990",
        "x-ratelimit-used": "10",
        "x-ratelimit-reset": str(math.ceil(NOW + 1800.4)),
        "x-ratelimit-resource": "core",
    }
    [got] = read_headers(h, now_epoch_s=NOW)
    assert (got.name, got.limit, got.remaining) == ("core", 5000, 4990)
    assert got.reset_s == pytest.approx(1800.75)


def test_no_style_sends_only_the_retry_headers() -> None:
    assert format_headers(None, [REQUESTS], now_epoch_s=NOW) == {}
    h = format_headers(None, [REQUESTS], now_epoch_s=NOW, retry_after_s=0.0012)
    assert h == {"Retry-After": "1", "X-Retry-After-Ms": "2"}
    assert read_headers(h, now_epoch_s=NOW) == []
    assert retry_after_s(h, now_epoch_s=NOW) == 0.002


@pytest.mark.parametrize("style", STYLES)
def test_every_style_adds_retry_after_on_a_refusal(style: str) -> None:
    h = format_headers(style, [REQUESTS], now_epoch_s=NOW, retry_after_s=2.5)
    assert h["Retry-After"] == "3" and h["X-Retry-After-Ms"] == "2500"
    assert retry_after_s({"Retry-After": "3"}, now_epoch_s=NOW) == 3.0
    assert detect_styles(h) == [style]


def test_unknown_style_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown header style 'ietf-99'"):
        format_headers("ietf-99", [REQUESTS], now_epoch_s=NOW)


def test_problem_details_body_names_the_violated_policies() -> None:
    content_type, text = problem_body("ietf", ["tokens"])  # type: ignore[misc]
    assert content_type == PROBLEM_CONTENT_TYPE == "application/problem+json"
    doc = json.loads(text)
    assert doc["type"] == QUOTA_EXCEEDED and doc["status"] == 429
    assert doc["violated-policies"] == ["tokens"]
    assert problem_body("openai", ["tokens"]) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.02, "20ms"), (0.0201, "21ms"), (1, "1s"), (1.5, "1.5s"), (360, "6m0s"),
     (3600, "1h0m0s"), (3725.25, "1h2m5.25s")],
)  # fmt: skip
def test_go_durations_round_trip(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(math.ceil(seconds * 1000 - 1e-6) / 1000)


quota_st = st.builds(
    lambda name, limit, share, reset, window, unit: Quota(
        name, limit, share * limit, reset, None if unit == "concurrent" else window, unit
    ),
    st.sampled_from(["a", "b", "input-tokens"]),
    st.integers(1, 10**7),
    st.floats(0, 1),
    st.floats(0, 10**6),
    st.floats(0.001, 10**6),
    st.sampled_from(["requests", "tokens", "concurrent"]),
)


@given(st.lists(quota_st, min_size=1, max_size=4, unique_by=lambda q: q.name), st.floats(0, 2e9))
def test_ietf_reads_back_every_quota_rounded_towards_waiting(qs: list[Quota], now: float) -> None:
    got = read_headers(format_headers("ietf", qs, now_epoch_s=now), now_epoch_s=now)
    assert len(got) == len(qs)
    for q, g in zip(qs, got, strict=True):
        assert (g.name, g.limit, g.unit) == (q.name, q.limit, q.unit)
        assert q.remaining - 1 < g.remaining <= q.remaining + 1e-6
        if q.reset_s is not None:
            assert q.reset_s - 1e-6 <= g.reset_s < q.reset_s + 1  # type: ignore[operator]
        if q.window_s is not None:
            assert g.window_s >= min(q.window_s, 1)  # type: ignore[operator]


@given(quota_st, st.floats(1e9, 2e9))
def test_resets_read_back_are_never_early(q: Quota, now: float) -> None:
    for style in STYLES:
        [got] = read_headers(format_headers(style, [q], now_epoch_s=now), now_epoch_s=now) or [None]
        if got is None:  # a concurrency quota: not announced by openai / anthropic
            assert q.unit == "concurrent" and style in ("openai", "anthropic")
            continue
        assert got.remaining <= q.remaining + 1e-6
        if q.reset_s is not None and q.unit != "concurrent":
            assert got.reset_s >= q.reset_s - 1e-6  # type: ignore[operator]


# --- samples of what the vendors send (from their documentation and public threads) ---


def test_ietf_draft_samples() -> None:
    # draft-ietf-httpapi-ratelimit-headers, "RateLimit Policy Field Examples" and the
    # partition key example of "RateLimit Field Examples"
    h = {
        "RateLimit-Policy": '"permin";q=50;w=60,"perhr";q=1000;w=3600',
        "RateLimit": '"permin";r=3;t=30, "perhr";r=999;pk=:dHJpYWwxMjEzMjM=:',
    }
    assert read_headers(h, now_epoch_s=NOW) == [
        Quota("permin", 50, 3, 30, 60, "requests"),
        Quota("perhr", 1000, 999, None, 3600, "requests"),
    ]
    h = {"RateLimit-Policy": '"peruser";q=65535;qu="content-bytes";w=10;pk=:sdfjLJUOUH==:',
         "RateLimit": '"peruser";r=300;t=5'}  # fmt: skip
    assert read_headers(h, now_epoch_s=NOW) == [
        Quota("peruser", 65535, 300, 5, 10, "content-bytes")
    ]
    # without a policy the limit is unknown (NaN); a malformed field is skipped whole
    [q] = read_headers({"RateLimit": '"default";r=50;t=30'}, now_epoch_s=NOW)
    assert (q.name, q.remaining, q.reset_s) == ("default", 50, 30) and math.isnan(q.limit)
    assert read_headers({"RateLimit": '"default";r=50;t=30,,'}, now_epoch_s=NOW) == []
    assert read_headers({"RateLimit": '"x";r=-1'}, now_epoch_s=NOW) == []


def test_openai_sample() -> None:
    # a chat completion's headers as posted on community.openai.com (May 2025)
    h = {
        "x-ratelimit-limit-requests": "5000",
        "x-ratelimit-limit-tokens": "160000",
        "x-ratelimit-limit-tokens_usage_based": "160000",
        "x-ratelimit-remaining-requests": "4999",
        "x-ratelimit-remaining-tokens": "159976",
        "x-ratelimit-remaining-tokens_usage_based": "159976",
        "x-ratelimit-reset-requests": "12ms",
        "x-ratelimit-reset-tokens": "9ms",
    }
    got = read_headers(h, now_epoch_s=NOW)
    assert [(q.name, q.limit, q.remaining, q.reset_s) for q in got] == [
        ("requests", 5000, 4999, pytest.approx(0.012)),
        ("tokens", 160_000, 159_976, pytest.approx(0.009)),
    ]
    # OpenAI's documentation: "x-ratelimit-reset-tokens: 6m0s"; Azure's "-1" = not enforced
    assert parse_duration("6m0s") == 360
    assert read_headers({"x-ratelimit-remaining-tokens": "-1"}, now_epoch_s=NOW) == []


def test_anthropic_sample() -> None:
    # Anthropic's documented names; resets are RFC 3339 dates
    h = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2025-12-01T11:54:00Z",
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "29000",
        "anthropic-ratelimit-input-tokens-reset": "2025-12-01T11:53:21.250000+00:00",
        "retry-after": "12",
    }
    got = read_headers(h, now_epoch_s=NOW)
    assert [(q.name, q.limit, q.remaining, q.unit) for q in got] == [
        ("requests", 50, 49, "requests"),
        ("input-tokens", 30_000, 29_000, "tokens"),
    ]
    assert got[0].reset_s == pytest.approx(39.75) and got[1].reset_s == pytest.approx(1.0)
    assert retry_after_s(h, now_epoch_s=NOW) == 12


def test_github_sample() -> None:
    # GitHub's REST documentation ("Checking the status of your rate limit")
    h = {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4999",
        "x-ratelimit-used": "1",
        "x-ratelimit-reset": "1691591363",
        "x-ratelimit-resource": "core",
    }
    [q] = read_headers(h, now_epoch_s=1_691_591_000.0)
    assert (q.name, q.limit, q.remaining, q.reset_s) == ("core", 5000, 4999, 363.0)
    [q] = read_headers(h, now_epoch_s=1_691_592_000.0)  # past the reset: 0, never negative
    assert q.reset_s == 0.0


def test_retry_after_forms() -> None:
    assert retry_after_s({"Retry-After": "Mon, 01 Dec 2025 11:53:30 GMT"}, now_epoch_s=NOW) == 9.75
    assert retry_after_s({"retry-after": "-5"}, now_epoch_s=NOW) == 0.0
    assert retry_after_s({"retry-after-ms": "250", "Retry-After": "1"}, now_epoch_s=NOW) == 0.25
    assert retry_after_s({"Retry-After": "soon"}, now_epoch_s=NOW) is None
    assert retry_after_s({}, now_epoch_s=NOW) is None
