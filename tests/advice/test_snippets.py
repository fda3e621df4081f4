"""Snippets: short pasteable code, checked as text (ast.parse and what it must say)."""

from __future__ import annotations

import ast

import pytest

import ratelab as rl
from ratelab.advice.snippets import to_snippet

TARGET = "http://127.0.0.1:8080"


def _exp(strategy: rl.Strategy, **kw: object) -> rl.Experiment:
    return rl.Experiment(target=TARGET, requests=50, workers=6, strategy=strategy, **kw)


def _imports(code: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


BURST_FREE = rl.TokenBucket(12.5, burst=1) + rl.ConnectionLimit(4) + rl.Retry(max_attempts=3)


@pytest.mark.parametrize("library", ["aiohttp", "httpx"])
def test_a_burst_free_rate_becomes_asynclimiter_one_per_period(library: str) -> None:
    code = to_snippet(_exp(BURST_FREE), library=library)
    assert _imports(code) == {"asyncio", library, "aiolimiter"}
    assert "AsyncLimiter(1, 0.08)" in code  # 1 per 1/12.5 s
    assert "ATTEMPTS = 3" in code and "Retry-After" in code
    cap = "TCPConnector(limit=4)" if library == "aiohttp" else "max_connections=4"
    assert cap in code
    assert f"URL = '{TARGET}/get'" in code and "workers=6" in code and "* 50" in code


def test_a_burst_and_a_semaphore_are_written_as_such() -> None:
    exp = _exp(rl.TokenBucket(10, burst=20) + rl.Concurrency(3))
    code = to_snippet(exp)
    ast.parse(code)
    assert "AsyncLimiter(20, 2)" in code and "a burst of 20" in code
    assert "asyncio.Semaphore(3)" in code and "async with in_flight:" in code
    assert "ATTEMPTS = 1" in code and "TCPConnector(limit=0)" in code


def test_aiometer_gets_max_per_second_and_max_at_once() -> None:
    code = to_snippet(_exp(BURST_FREE), library="aiometer")
    assert _imports(code) == {"asyncio", "functools", "aiometer", "httpx"}
    assert "max_per_second=12.5" in code and "max_at_once=4" in code
    assert "no retry" in code


def test_aiometer_refuses_a_burst_and_a_missing_rate() -> None:
    with pytest.raises(rl.ConfigError, match="burst of 20"):
        to_snippet(_exp(rl.RateLimit(20)), library="aiometer")
    with pytest.raises(rl.ConfigError, match="no rate"):
        to_snippet(_exp(rl.Concurrency(3)), library="aiometer")


@pytest.mark.parametrize(
    "strategy", [rl.HeaderPacing(), rl.SlidingWindow(5), rl.AllOf(rl.RateLimit(5))]
)
def test_what_a_snippet_cannot_say_is_a_config_error(strategy: rl.Strategy) -> None:
    with pytest.raises(rl.ConfigError) as e:
        to_snippet(_exp(strategy))
    assert e.value.parameter == "strategy" and "to_script()" in str(e.value)


def test_an_unknown_library_is_a_config_error() -> None:
    with pytest.raises(rl.ConfigError) as e:
        to_snippet(_exp(BURST_FREE), library="requests")
    assert e.value.parameter == "library"


def test_the_recommendation_hands_its_best_to_the_snippet() -> None:
    rec = rl.recommend(rl.ServerRateLimit(30, 2.0), _exp(rl.Unlimited()))
    code = rec.to_snippet("httpx")
    ast.parse(code)
    assert repr(rec.strategy) in code
