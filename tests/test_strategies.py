"""Strategy behaviour on a controlled clock: exact admission schedules, exact bounds."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import ratelab as rl
from ratelab.strategies import as_strategy


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
    admitted, _ = virtual_clock(drive(rl.RateLimit(20, per_s=1.0), ["/get"] * 40))
    times = [t for t, _ in admitted]
    assert times[:20] == pytest.approx([0.0] * 20, abs=1e-9)
    # then exactly one every 50 ms: the bucket leaks 20/s
    assert times[20:] == pytest.approx([0.05 * k for k in range(1, 21)], abs=1e-9)


def test_burst_free_rate_limit_never_admits_two_within_50ms(virtual_clock) -> None:
    admitted, _ = virtual_clock(drive(rl.RateLimit(1, per_s=0.05), ["/get"] * 30))
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
    strategy = rl.RateLimit(1, per_s=0.05) + rl.Concurrency(1)
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
        (rl.RateLimit(1, per_s=0.05), "RateLimit(1, per_s=0.05)"),
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
    s = rl.RateLimit(1, per_s=0.05) + rl.ConnectionLimit(10) + rl.Concurrency(3)
    assert s.rate_per_s == pytest.approx(20.0)
    assert s.connection_cap == 10
    assert s.concurrency_cap == 3
    assert rl.Concurrency(3, endpoint="/a").concurrency_cap is None
    assert rl.Unlimited().rate_per_s is None
