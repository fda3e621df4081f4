"""rl.recommend in virtual time: what it searches, ranks and refuses (no sockets)."""

from __future__ import annotations

import pytest

import ratelab as rl
from ratelab.advice.recommend import steady_throughput_per_s
from ratelab.testing import make_frame

TARGET = "http://127.0.0.1:9"


def _workload(**kw: object) -> rl.Experiment:
    return rl.Experiment(target=TARGET, **{"requests": 120, "workers": 8, "seed": 1, **kw})


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "token_bucket", "gcra"])
def test_the_best_is_refused_nothing_in_simulation_and_near_the_limit(algorithm: str) -> None:
    limit = rl.ServerRateLimit(30, 2.0, algorithm=algorithm)
    rec = rl.recommend(limit, _workload())
    assert rec.limit_per_s == 15
    best = rec.best[0]
    assert best.rate_429 == 0
    # the margin (2/(2+0.05)) and the bisection (about 1%) cost at most ~4%
    assert 0.95 * 15 <= best.throughput_per_s <= 15.01
    assert rec.margin == pytest.approx(0.05 / 2.05)
    assert rec.experiment.strategy == best.strategy
    assert "Retry" in repr(best.strategy)
    assert all(c.rate_429 == 0 for c in rec.best)


def test_the_naive_limiter_is_tried_and_refused_on_a_fixed_window() -> None:
    rec = rl.recommend(rl.ServerRateLimit(30, 2.0), _workload())
    naive = next(c for c in rec.tried if c.shape.startswith("AsyncLimiter"))
    assert naive.rate_429 > 0.05  # a full bucket at the start: 2 x limit in the first window
    assert naive not in rec.best


def test_a_fixed_window_needs_the_rate_bisected_below_the_limit() -> None:
    """At exactly the limit, a burst-free client's 31st request lands in the first window."""
    rec = rl.recommend(rl.ServerRateLimit(30, 2.0), _workload(), slack_s=0.0)
    best = rec.best[0]
    assert best.shape == "burst-free token bucket"
    rate = best.strategy.parts[0].rate_per_s
    assert 14.5 <= rate < 15.0
    assert rec.simulations > 3  # the bisection ran


def test_tokens_bind_through_the_workload_cost() -> None:
    model = rl.profiles.openai(rpm=600, tpm=30_000)
    rec = rl.recommend(model, _workload(cost=100, requests=60))
    assert rec.limit_per_s == pytest.approx(5.0)  # 30,000 tokens/min at 100 a request
    assert "tokens" in rec.binding
    assert rec.best[0].rate_429 == 0


def test_random_costs_get_a_tokens_limit_in_an_allof() -> None:
    model = rl.profiles.openai(rpm=600, tpm=30_000)
    rec = rl.recommend(model, _workload(cost=rl.Uniform(50, 150), requests=60))
    burst_free = next(c for c in rec.tried if c.shape == "burst-free rate")
    assert "AllOf" in repr(burst_free.strategy) and "unit='tokens'" in repr(burst_free.strategy)
    assert not burst_free.scriptable


def test_a_concurrent_quota_becomes_a_connection_cap() -> None:
    model = rl.profiles.github(per_hour=18_000, concurrent=4, points_per_minute=1200)
    rec = rl.recommend(model, _workload())
    assert rec.limit_per_s == pytest.approx(5.0)
    assert "ConnectionLimit(4)" in repr(rec.best[0].strategy)


def test_header_pacing_and_the_semaphore_are_tried_when_the_server_allows() -> None:
    server = rl.LocalServer(rate_limit=rl.ServerRateLimit(30, 2.0), latency=0.05)
    shapes = {c.shape for c in rl.recommend(server, _workload()).tried}
    assert {"header pacing", "semaphore (Little's law)"} <= shapes
    shapes = {c.shape for c in rl.recommend(rl.ServerRateLimit(30, 2.0), _workload()).tried}
    assert "header pacing" not in shapes and "semaphore (Little's law)" not in shapes


def test_a_probe_is_read_through_its_rate_limits() -> None:
    class FakeProbe:
        rate_limits = (rl.ServerRateLimit(30, 2.0, algorithm="gcra"),)

    rec = rl.recommend(FakeProbe(), _workload())
    assert "gcra" in rec.binding and rec.best[0].rate_429 == 0


def test_min_wait_prefers_the_burst_on_a_bucket() -> None:
    rec = rl.recommend(rl.ServerRateLimit(30, 2.0, algorithm="token_bucket"),
                       _workload(), objective="min_wait")  # fmt: skip
    assert rec.best[0].shape == "token bucket + burst"


def test_repr_and_html_name_the_strategy_and_the_margin() -> None:
    rec = rl.recommend(rl.ServerRateLimit(30, 2.0), _workload())
    text, page = repr(rec), rec._repr_html_()
    assert repr(rec.strategy) in text and "margin 2.4%" in text and rec.why in text
    assert "<table>" in page and "margin 2.4%" in page


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [({"objective": "fastest"}, "objective"), ({"max_429_rate": 1.5}, "max_429_rate"),
     ({"top": 0}, "top"), ({"slack_s": -1}, "slack_s")],
)  # fmt: skip
def test_bad_options_are_config_errors(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(rl.ConfigError) as e:
        rl.recommend(rl.ServerRateLimit(30, 2.0), _workload(), **kwargs)  # type: ignore[arg-type]
    assert e.value.parameter == parameter


def test_a_server_without_a_rate_limit_is_refused() -> None:
    with pytest.raises(rl.ConfigError, match="server_or_probe"):
        rl.recommend("http://example.com", _workload())
    with pytest.raises(rl.ConfigError, match="no rate limit"):
        rl.recommend(rl.LocalServer(max_concurrency=3), _workload())


def test_steady_throughput_reads_the_second_half() -> None:
    # a burst of 10 at t=0, then one every 0.1 s to t=10: the second half is 10/s
    sent = [0.0] * 10 + [0.1 * k for k in range(1, 101)]
    df = make_frame(sent_s=sent, status=[200] * len(sent))
    assert steady_throughput_per_s(df) == pytest.approx(10.0)
    df = make_frame(sent_s=sent, status=[429] * len(sent))
    assert steady_throughput_per_s(df) != steady_throughput_per_s(df)  # NaN: none succeeded


def test_a_short_workload_ranks_only_shapes_safe_by_construction() -> None:
    """An hour's fixed window holds 18,000: the 2,000 requests simulated are never refused,
    but AsyncLimiter(18000, 3600) would send 2 x limit across a window edge."""
    model = rl.profiles.github(per_hour=18_000, concurrent=4, points_per_minute=600_000)
    rec = rl.recommend(model, _workload())
    naive = next(c for c in rec.tried if c.shape.startswith("AsyncLimiter"))
    assert naive.rate_429 == 0 and not naive.safe
    assert naive not in rec.best
    assert "does not reach two windows" in rec.why


def test_a_long_enough_simulation_ranks_by_what_it_saw() -> None:
    rec = rl.recommend(rl.ServerRateLimit(30, 2.0), _workload())
    assert "the server's burst and two windows more" in rec.why


def test_snippet_and_script_fall_back_past_what_they_cannot_say() -> None:
    server = rl.LocalServer(rate_limit=rl.ServerRateLimit(30, 2.0, algorithm="token_bucket"))
    rec = rl.recommend(server, _workload())
    assert rec.best[0].shape == "header pacing"  # follows the headers: no margin needed
    code = rec.to_snippet()
    assert "HeaderPacing" not in code.splitlines()[0] and "AsyncLimiter(" in code
    chosen = rec.scriptable
    assert chosen is not None and chosen.shape != "header pacing"
    assert repr(chosen.strategy) in rec.to_script()


def test_max_throughput_ties_go_to_the_shape_without_a_burst() -> None:
    """On a bucket, a burst and no burst give the same steady rate; the burst counts on the
    server's bucket being full, so the burst-free one is recommended."""
    rec = rl.recommend(rl.ServerRateLimit(30, 2.0, algorithm="token_bucket"), _workload())
    shapes = [c.shape for c in rec.best]
    assert shapes[0] == "burst-free token bucket"
    assert shapes.index("token bucket + burst") > 0
