"""Strategy behaviour on a controlled clock: exact admission schedules, exact bounds."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import ratelab as rl
from ratelab.experiment.strategies import as_strategy


async def drive(
    strategy: rl.Strategy, endpoints: list[str], *, service_s: float = 0.0
) -> tuple[list[tuple[float, str]], dict[str, int]]:
    """Send one fake request per item of ``endpoints`` through the strategy's guards, each
    'in flight' for ``service_s`` on the loop's clock. Returns (admission time, endpoint) in
    admission order and the peak number in flight per endpoint (and '*' for all)."""
    built = strategy.build()
    loop = asyncio.get_running_loop()
    admitted: list[tuple[float, str]] = []
    in_flight: dict[str, int] = {"*": 0}
    peak: dict[str, int] = {"*": 0}

    async def one(endpoint: str) -> None:
        for g in built.guards:
            await g.acquire(endpoint)
        admitted.append((loop.time(), endpoint))
        for key in ("*", endpoint):
            in_flight[key] = in_flight.get(key, 0) + 1
            peak[key] = max(peak.get(key, 0), in_flight[key])
        try:
            await asyncio.sleep(service_s)
        finally:
            for key in ("*", endpoint):
                in_flight[key] -= 1
            for g in built.guards:
                g.release(endpoint)

    await asyncio.gather(*(one(e) for e in endpoints))
    return admitted, peak


def test_rate_limit_20_per_s_admits_20_at_once_then_one_per_50ms(virtual_clock) -> None:
    admitted, _ = virtual_clock(drive(rl.RateLimit(20, period_s=1.0), ["/get"] * 40))
    times = [t for t, _ in admitted]
    assert times[:20] == pytest.approx([0.0] * 20, abs=1e-9)
    # then exactly one every 50 ms: the bucket leaks 20/s
    assert times[20:] == pytest.approx([0.05 * k for k in range(1, 21)], abs=1e-9)


def test_burst_free_rate_limit_never_admits_two_within_50ms(virtual_clock) -> None:
    admitted, _ = virtual_clock(drive(rl.RateLimit(1, period_s=0.05), ["/get"] * 30))
    times = [t for t, _ in admitted]
    assert times == pytest.approx([0.05 * k for k in range(30)], abs=1e-9)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.05 - 1e-9


def test_concurrency_never_more_than_n_in_flight(virtual_clock) -> None:
    admitted, peak = virtual_clock(drive(rl.Concurrency(2), ["/get"] * 7, service_s=0.1))
    assert peak["*"] == 2
    # two at a time, each batch 100 ms after the last: 0, 0, .1, .1, .2, .2, .3
    assert [t for t, _ in admitted] == pytest.approx([0, 0, 0.1, 0.1, 0.2, 0.2, 0.3], abs=1e-9)


def test_endpoint_scoped_concurrency_leaves_other_endpoints_free(virtual_clock) -> None:
    endpoints = ["/slow"] * 4 + ["/fast"] * 4
    admitted, peak = virtual_clock(
        drive(rl.Concurrency(1, endpoint="/slow"), endpoints, service_s=0.5)
    )
    assert peak["/slow"] == 1
    assert peak["/fast"] == 4  # unguarded: all at once
    assert [t for t, e in admitted if e == "/fast"] == pytest.approx([0.0] * 4, abs=1e-9)
    assert [t for t, e in admitted if e == "/slow"] == pytest.approx([0, 0.5, 1.0, 1.5], abs=1e-9)


def test_composition_applies_both_bounds(virtual_clock) -> None:
    strategy = rl.RateLimit(1, period_s=0.05) + rl.Concurrency(1)
    admitted, peak = virtual_clock(drive(strategy, ["/get"] * 4, service_s=0.2))
    assert peak["*"] == 1
    # the semaphore (200 ms each) binds, not the 50 ms spacing of the limiter
    assert [t for t, _ in admitted] == pytest.approx([0, 0.2, 0.4, 0.6], abs=1e-9)


def test_guards_are_built_fresh_for_every_run(virtual_clock) -> None:
    strategy = rl.RateLimit(5)
    virtual_clock(drive(strategy, ["/get"] * 5))
    second, _ = virtual_clock(drive(strategy, ["/get"] * 5))
    # a limiter shared between runs would be full and make the second run wait 1 s;
    # a fresh one admits all 5 at once
    times = [t for t, _ in second]
    assert max(times) - min(times) == pytest.approx(0.0, abs=1e-9)


def test_connection_limits_combine_to_the_tightest() -> None:
    s = rl.ConnectionLimit(10) + rl.RateLimit(20) + rl.ConnectionLimit(4, per_host=2)
    built = s.build_limits()
    assert built == (4, 2)
    assert rl.Unlimited().build_limits() == (0, 0)  # really unlimited: aiohttp's default is 100
    assert rl.RateLimit(20).build_limits() == (0, 0)


@pytest.mark.parametrize(
    ("strategy", "text"),
    [
        (rl.Unlimited(), "Unlimited()"),
        (rl.RateLimit(20), "RateLimit(20)"),
        (rl.RateLimit(1, period_s=0.05), "RateLimit(1, period_s=0.05)"),
        (rl.ConnectionLimit(10), "ConnectionLimit(10)"),
        (rl.ConnectionLimit(10, per_host=2), "ConnectionLimit(10, per_host=2)"),
        (rl.Concurrency(3, endpoint="/slow"), "Concurrency(3, endpoint='/slow')"),
        (rl.RateLimit(20) + rl.ConnectionLimit(10), "RateLimit(20) + ConnectionLimit(10)"),
        (rl.Unlimited() + rl.Concurrency(2), "Concurrency(2)"),
    ],
)
def test_repr_reads_like_the_code_and_round_trips(strategy: rl.Strategy, text: str) -> None:
    assert repr(strategy) == text
    assert eval(text, {**vars(rl)}) == strategy or repr(eval(text, {**vars(rl)})) == text
    assert repr(as_strategy(strategy.to_dict())) == text


def test_what_a_strategy_bounds() -> None:
    s = rl.RateLimit(1, period_s=0.05) + rl.ConnectionLimit(10) + rl.Concurrency(3)
    assert s.rate_limit_per_s == pytest.approx(20.0)
    assert s.connection_cap == 10
    assert s.concurrency_cap == 3
    assert rl.Concurrency(3, endpoint="/a").concurrency_cap is None
    assert rl.Unlimited().rate_limit_per_s is None


def test_token_bucket_spends_its_burst_then_refills_at_the_rate(virtual_clock) -> None:
    admitted, _ = virtual_clock(drive(rl.TokenBucket(10, burst=3), ["/get"] * 6))
    times = [t for t, _ in admitted]
    # 3 tokens at t=0, then one every 100 ms
    assert times == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3], abs=1e-9)


def test_token_bucket_with_burst_one_is_smooth(virtual_clock) -> None:
    admitted, _ = virtual_clock(drive(rl.TokenBucket(20, burst=1), ["/get"] * 5))
    assert [t for t, _ in admitted] == pytest.approx([0, 0.05, 0.1, 0.15, 0.2], abs=1e-9)


def test_sliding_window_never_exceeds_its_limit_in_any_window(virtual_clock) -> None:
    admitted, _ = virtual_clock(drive(rl.SlidingWindow(3, window_s=1.0), ["/get"] * 8))
    times = [t for t, _ in admitted]
    # 3 at once, then each waits for the oldest of the last 3 to leave the window
    assert times == pytest.approx([0, 0, 0, 1, 1, 1, 2, 2], abs=1e-9)
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 1.0 - 1e-9


def test_adaptive_paces_cuts_on_429_and_creeps_up(virtual_clock) -> None:
    async def scenario() -> tuple[list[float], list[float]]:
        built = rl.Adaptive(
            start_rate_per_s=10, min_rate_per_s=1, increase=2.0, cooldown_s=0.5
        ).build()
        (g,) = built.guards
        loop = asyncio.get_running_loop()
        times, rates = [], []
        for status in [200, 200, 429, 429, 200]:
            await g.acquire("/get")
            times.append(loop.time())
            g.observe(status, None)
            rates.append(g.rate)
        return times, rates

    times, rates = virtual_clock(scenario())
    # spacing is 1/rate at the time of each admission
    assert times[:3] == pytest.approx([0, 0.1, 0.1 + 1 / 10.2], abs=1e-9)
    r1 = 10 + 2 / 10
    r2 = r1 + 2 / r1
    assert rates[:2] == pytest.approx([r1, r2])
    assert rates[2] == pytest.approx(r2 * 0.5)  # multiplicative decrease on 429
    assert rates[3] == pytest.approx(r2 * 0.5)  # second 429 within the cooldown: no cut
    assert rates[4] == pytest.approx(r2 * 0.5 + 2 / (r2 * 0.5))


def test_retry_backoff_is_exponential_capped_and_honours_retry_after() -> None:
    r = rl.Retry(max_attempts=5, backoff_s=0.1, max_backoff_s=0.3, jitter=False)
    assert [r.backoff(a, None, 0.5) for a in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert r.backoff(1, 0.25, 0.5) == 0.25  # the server's wait...
    assert r.backoff(1, 2.0, 0.5) == 0.3  # ...capped at max_backoff_s (issue 17 item 2)
    assert rl.Retry(backoff_s=0.1, jitter=True).backoff(2, None, 0.25) == pytest.approx(0.05)
    assert rl.Retry(honor_retry_after=False, jitter=False).backoff(1, 5.0, 0.0) == 0.1
    assert r.should_retry(503, None) and r.should_retry(0, "TimeoutError")
    assert not r.should_retry(404, None) and not r.should_retry(200, None)
    assert (rl.RateLimit(5) + r).build().retry == r


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: rl.TokenBucket(0), "TokenBucket(rate_per_s)"),
        (lambda: rl.TokenBucket(5, burst=0.5), "TokenBucket(burst)"),
        (lambda: rl.SlidingWindow(0), "SlidingWindow(limit)"),
        (lambda: rl.SlidingWindow(5, window_s=-1), "SlidingWindow(window_s)"),
        (lambda: rl.Adaptive(start_rate_per_s=0.5, min_rate_per_s=1), "Adaptive(start_rate_per_s)"),
        (lambda: rl.Adaptive(decrease=1.5), "Adaptive(decrease)"),
        (lambda: rl.Retry(max_attempts=0), "Retry(max_attempts)"),
        (lambda: rl.Retry(statuses=(99,)), "Retry(statuses)"),
        (lambda: rl.Retry(jitter="yes"), "Retry(jitter)"),
    ],
)
def test_bad_reactive_strategy_input(make, parameter: str) -> None:
    with pytest.raises(rl.ConfigError) as info:
        make()
    assert info.value.parameter == parameter


@pytest.mark.parametrize(
    ("max_rate", "period_s", "hint"),
    [(0.5, 1.0, "RateLimit(1, period_s=2)"), (0.25, 0.5, "RateLimit(1, period_s=2)")],
)
def test_rate_limit_below_one_per_period_is_refused_with_its_burst_free_form(
    max_rate: float, period_s: float, hint: str
) -> None:
    # issue 17 item 5: RateLimit(0.5) was accepted and every request failed in aiolimiter
    with pytest.raises(rl.ConfigError, match=r"must be >= 1") as e:
        rl.RateLimit(max_rate, period_s=period_s)
    assert e.value.parameter == "RateLimit(max_rate)" and hint in str(e.value)
    assert rl.RateLimit(1, period_s=2).steady_rate_per_s == 0.5  # the suggestion is valid
