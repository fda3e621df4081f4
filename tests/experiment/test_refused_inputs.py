"""Issue 17 item 11: inputs that were accepted and then failed or hung are ConfigErrors
naming the parameter, raised before anything is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

import ratelab as rl
from ratelab.client.engine import Engine
from ratelab.experiment.distributions import Distribution
from ratelab.experiment.experiment import MAX_REQUESTS, MAX_RUN_S
from ratelab.testing import ScriptedTransport, SentRequest, run_virtual

URL = "http://127.0.0.1:9"  # never contacted


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:70000",
        "http://127.0.0.1:-1",
        "http://127.0.0.1:abc",
        "http://127.0.0.1:0",
        "http://127.0.0.1:",
        "http://[::1",
        "http://127.0.0.1:9/?q=1",
        "http://127.0.0.1:9/api?",
        "http://127.0.0.1:9#top",
    ],
)
def test_a_target_that_cannot_be_sent_to_is_refused(target: str) -> None:
    with pytest.raises(rl.ConfigError) as e:
        rl.Experiment(target=target)
    assert e.value.parameter == "target" and e.value.value == target


def test_a_query_belongs_in_the_endpoint() -> None:
    exp = rl.Experiment(target="http://[::1]:8080/api", endpoints="/get?q=1")
    assert exp.target == "http://[::1]:8080/api"  # a path in the target is kept


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: rl.Experiment(target=URL, requests=10**12), "requests"),
        (lambda: rl.Experiment(target=URL, requests=MAX_REQUESTS + 1), "requests"),
        (lambda: rl.Experiment(target=URL, workers=10**12), "workers"),
        (lambda: rl.Experiment(target=URL, think_time=rl.LogNormal(1, 1e10)), "think_time"),
        (lambda: rl.Experiment(target=URL, think_time=rl.Fixed(MAX_RUN_S * 2)), "think_time"),
        (lambda: rl.Experiment(target=URL, arrivals=rl.Constant(1e-320)), "arrivals"),
        (lambda: rl.Experiment(target=URL, requests=3, arrivals=rl.Poisson(1e-6)), "arrivals"),
        (
            lambda: rl.Experiment.from_dict(
                {"target": URL, "strategy": {"type": "Combined", "parts": 5}}
            ),
            "strategy.parts",
        ),
        (lambda: rl.SharedRateLimit(10**20), "SharedRateLimit(max_rate)"),
        (lambda: rl.SharedRateLimit(5, period_s=10**20), "SharedRateLimit(period_s)"),
        (lambda: rl.Retry(statuses=[500.7]), "Retry(statuses)"),
        (lambda: rl.Retry(statuses=[True]), "Retry(statuses)"),
    ],
)
def test_values_that_would_fail_or_hang_the_run_are_refused(make: Any, parameter: str) -> None:
    with pytest.raises(rl.ConfigError) as e:
        make()
    assert e.value.parameter == parameter


def test_the_limits_themselves_are_accepted() -> None:
    exp = rl.Experiment(target=URL, requests=MAX_REQUESTS, arrivals=rl.Constant(100))
    assert exp.requests == MAX_REQUESTS
    assert rl.Retry(statuses=[500.0]).statuses == (500,)  # a whole float is a code
    one = rl.Experiment(target=URL, requests=1, arrivals=rl.Constant(1e-320))
    assert one.requests == 1  # one arrival, at t=0: nothing waits


class _Infinite(Distribution):
    """A think time whose mean looks harmless but whose draws are not finite."""

    mean_s = 1.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, np.inf)


def test_drawn_times_that_never_end_are_refused_before_anything_is_sent() -> None:
    exp = rl.Experiment(target=URL, requests=3, think_time=_Infinite())
    tr = ScriptedTransport()
    with pytest.raises(rl.ConfigError) as e:
        Engine(exp, base_url=URL, transport=tr)
    assert e.value.parameter == "think_time" and "inf" in str(e.value)
    assert tr.sent == []


def test_the_run_starts_no_more_workers_than_requests() -> None:
    seen: list[int] = []

    def respond(req: SentRequest) -> int:
        seen.append(len(asyncio.all_tasks()))
        return 200

    exp = rl.Experiment(target=URL, requests=3, workers=5_000)
    store, _ = run_virtual(
        Engine(exp, base_url=URL, transport=ScriptedTransport(respond=respond)).run()
    )
    df = store.to_frame()
    assert len(df) == 3 and (df.status == 200).all()
    assert max(seen) <= 3 + 3  # three workers, the run task, the state sampler, a ticker
