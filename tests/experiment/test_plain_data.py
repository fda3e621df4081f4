"""An Experiment is plain data: pickle and to_dict/from_dict give an equal Experiment."""

from __future__ import annotations

import json
import pickle

import pytest

import ratelab as rl

URL = "http://127.0.0.1:8080"

EXPERIMENTS = {
    "defaults": rl.Experiment(target=URL),
    "everything": rl.Experiment(
        target=URL + "/api",
        endpoints={"/get": 3, "/slow": 1.5},
        requests=17,
        workers=4,
        think_time=rl.LogNormal(0.1, 0.5),
        arrivals=rl.Poisson(12.5),
        timeout_s=2.5,
        method="POST",
        seed=7,
        name="all of it",
        processes=2,
        loop="uvloop",
        client="httpx",
        strategy=rl.RateLimit(20, 2)
        + rl.ConnectionLimit(10, per_host=5)
        + rl.Concurrency(3, endpoint="/slow")
        + rl.TokenBucket(5, burst=2)
        + rl.SlidingWindow(9, window_s=0.5)
        + rl.Adaptive()
        + rl.Retry(max_attempts=5),
    ),
    "uniform-constant": rl.Experiment(
        target=URL,
        think_time=rl.Uniform(0.01, 0.02),
        arrivals=rl.Constant(3),
        strategy=rl.Retry(statuses=(429,), jitter=False),
    ),
    "fixed-exponential": rl.Experiment(target=URL, think_time=rl.Exponential(0.3)),
    "fixed": rl.Experiment(target=URL, think_time=rl.Fixed(0.25)),
}


@pytest.mark.parametrize("exp", EXPERIMENTS.values(), ids=EXPERIMENTS.keys())
def test_pickle_round_trips_exactly(exp: rl.Experiment) -> None:
    back = pickle.loads(pickle.dumps(exp))
    assert back == exp and repr(back.strategy) == repr(exp.strategy)


@pytest.mark.parametrize("exp", EXPERIMENTS.values(), ids=EXPERIMENTS.keys())
def test_to_dict_from_dict_round_trips_exactly_through_json(exp: rl.Experiment) -> None:
    data = json.loads(json.dumps(exp.to_dict()))  # plain data: JSON can carry it
    back = rl.Experiment.from_dict(data)
    assert back == exp and back.to_dict() == exp.to_dict()


def test_saved_data_without_a_client_loads_as_aiohttp() -> None:
    data = rl.Experiment(target=URL, client="httpx").to_dict()
    assert data["client"] == "httpx"
    del data["client"]  # plain data saved before the field existed
    assert rl.Experiment.from_dict(data).client == "aiohttp"


def test_a_local_server_target_is_held_as_its_url() -> None:
    with rl.LocalServer() as server:
        exp = rl.Experiment(target=server, requests=3)
        assert exp.target == server.url
        assert pickle.loads(pickle.dumps(exp)) == exp  # no live server inside
