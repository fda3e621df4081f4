"""The explorer's controls: names, ranges, choices and what a setting changes; every bad
control is a ConfigError naming it, raised before anything is simulated or drawn."""

from __future__ import annotations

from typing import Any

import pytest

import ratelab as rl
from ratelab.explorer.controls import ALGORITHMS, ServerConfig, apply_setting
from ratelab.server.policies import ALGORITHMS as SERVER_ALGORITHMS

TARGET = "http://127.0.0.1:8080"  # never contacted
EXP = rl.Experiment(target=TARGET, requests=40, workers=10, seed=1,
                    strategy=rl.RateLimit(20) + rl.ConnectionLimit(10))  # fmt: skip
SERVER = rl.LocalServer(latency=rl.Fixed(0.05), seed=1, rate_limit=rl.ServerRateLimit(25))


class Recorder:
    """A simulate function that records what it was asked to run."""

    def __init__(self) -> None:
        self.calls: list[rl.Experiment] = []

    def __call__(self, exp: rl.Experiment, server: rl.LocalServer | None) -> rl.Result:
        self.calls.append(exp)
        return rl.simulate(exp, server, progress=False)


def test_the_algorithms_are_the_servers() -> None:
    assert ALGORITHMS == SERVER_ALGORITHMS


@pytest.mark.parametrize(
    ("controls", "parameter"),
    [
        ({"rat": (5, 60)}, "rat"),  # a typo
        ({"target": ["http://127.0.0.1:1"]}, "target"),  # not a control
        ({"rate": (60, 5)}, "rate"),  # low > high
        ({"rate": (0.5, 60)}, "rate"),  # aiolimiter needs max_rate >= 1
        ({"rate": (5, 60, 0)}, "rate"),  # step 0
        ({"rate": (5, float("inf"))}, "rate"),
        ({"rate": "5-60"}, "rate"),
        ({"workers": (1.5, 10)}, "workers"),  # an integer field
        ({"workers": (0, 10)}, "workers"),
        ({"connections": []}, "connections"),  # no choices
        ({"algorithm": ["fixed_window", "leaky"]}, "algorithm"),
        ({"algorithm": ("fixed_window", "gcra")}, "algorithm"),  # a range of names
        ({"strategy": (1, 2)}, "strategy"),
        ({"strategy": [rl.RateLimit(10), "fast"]}, "strategy"),
        ({"latency_s": (-1.0, 1.0)}, "latency_s"),
        ({"requests": (1, 2 * 10**7)}, "requests"),  # the high end is not a valid Experiment
    ],
)
def test_a_bad_control_is_a_config_error_before_anything_runs(
    controls: dict[str, Any], parameter: str
) -> None:
    recorder = Recorder()
    with pytest.raises(rl.ConfigError) as info:
        rl.explore(EXP, SERVER, simulate=recorder, **controls)
    assert info.value.parameter == parameter
    assert recorder.calls == []  # nothing simulated, nothing drawn


def test_server_controls_need_a_server_with_what_they_change() -> None:
    recorder = Recorder()
    with pytest.raises(rl.ConfigError, match="needs a server") as info:
        rl.explore(EXP, None, simulate=recorder, algorithm=list(ALGORITHMS))
    assert info.value.parameter == "algorithm"
    no_limit = rl.LocalServer(latency=rl.Fixed(0.05))
    with pytest.raises(rl.ConfigError, match="rate limit"):
        rl.explore(EXP, no_limit, simulate=recorder, algorithm=list(ALGORITHMS))
    assert recorder.calls == []


def test_default_controls_follow_the_strategy_and_the_server() -> None:
    pytest.importorskip("ipywidgets")  # the widgets: the `notebooks` extra
    full = rl.explore(EXP, SERVER)
    try:
        assert list(full.controls) == ["workers", "rate", "connections", "latency_s", "algorithm"]
        assert full.controls["rate"].value == 20 and full.controls["connections"].value == 10
        assert full.controls["latency_s"].value == pytest.approx(0.05)
        assert full.controls["algorithm"].value == "fixed_window"
    finally:
        full.close()
    bare = rl.explore(rl.Experiment(target=TARGET, requests=20, workers=4, seed=1))
    try:
        assert list(bare.controls) == ["workers"]
        assert bare.result.experiment.strategy == rl.Unlimited()
    finally:
        bare.close()


def test_a_setting_changes_the_named_fields() -> None:
    config = ServerConfig.of(SERVER)
    setting = {"rate": 30.0, "connections": 3, "workers": 7, "latency_s": 0.2,
               "algorithm": "gcra"}  # fmt: skip
    exp, server = apply_setting(EXP, config, setting)
    assert exp.strategy == rl.RateLimit(30) + rl.ConnectionLimit(3)
    assert exp.workers == 7 and exp.requests == EXP.requests and exp.target == EXP.target
    assert server is not None
    built = server.build()
    assert built.latency == rl.Fixed(0.2)
    assert built.rate_limit == (rl.ServerRateLimit(25, algorithm="gcra"),)
    assert not built.running
    # the original experiment and server are untouched
    assert EXP.strategy == rl.RateLimit(20) + rl.ConnectionLimit(10)
    assert SERVER.rate_limit[0].algorithm == "fixed_window"


def test_rate_and_connections_add_their_part_when_the_strategy_has_none() -> None:
    retry = rl.Experiment(target=TARGET, requests=10, strategy=rl.Retry(max_attempts=2))
    exp, _ = apply_setting(retry, None, {"rate": 12.0, "connections": 4})
    assert exp.strategy == rl.RateLimit(12) + rl.Retry(max_attempts=2) + rl.ConnectionLimit(4)
    chosen, _ = apply_setting(
        EXP, None, {"strategy": rl.TokenBucket(20, burst=5), "rate": 9.0}
    )  # strategy first, then rate
    assert chosen.strategy == rl.RateLimit(9) + rl.TokenBucket(20, burst=5)


def test_a_value_outside_the_range_starts_at_its_nearest_end() -> None:
    pytest.importorskip("ipywidgets")  # the widgets: the `notebooks` extra
    explorer = rl.explore(EXP, SERVER, rate=(30, 60), connections=(1, 5))
    try:
        assert explorer.controls["rate"].value == 30 and explorer.controls["connections"].value == 5
        assert explorer.result.experiment.strategy == rl.RateLimit(30) + rl.ConnectionLimit(5)
    finally:
        explorer.close()


def test_without_ipywidgets_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # "import ipywidgets" fails
    recorder = Recorder()
    with pytest.raises(ImportError, match=r"pip install 'ratelab\[notebooks\]'"):
        rl.explore(EXP, SERVER, simulate=recorder, rate=(5, 60))
    assert recorder.calls == []
