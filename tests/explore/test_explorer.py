"""The explorer as code uses it: a control set programmatically re-simulates (virtual time)
and redraws; a change that arrives while one is computed supersedes it; pins, the setting
handed back, and "run it for real" against a LocalServer on 127.0.0.1."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import ratelab as rl

pytest.importorskip("ipywidgets")  # the `notebooks` extra (make test installs it; the floor not)

TARGET = "http://127.0.0.1:8080"  # never contacted by a simulation
SERVER = rl.LocalServer(latency=rl.Fixed(0.05), seed=1)


def _steady_rate(result: rl.Result, *, after_s: float = 1.0) -> float:
    """Requests sent per second after the first period (aiolimiter's initial burst of
    ``max_rate`` goes out at once and is not the steady rate)."""
    sent = np.sort(result.df["sent_s"].to_numpy())
    later = sent[sent >= after_s]
    return (later.size - 1) / (later[-1] - later[0])


def test_moving_rate_from_20_to_30_resimulates_at_30_per_s() -> None:
    exp = rl.Experiment(target=TARGET, requests=400, workers=20, seed=1,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(10))  # fmt: skip
    explorer = rl.explore(exp, SERVER, rate=(5, 60))
    try:
        before = explorer.result
        first_png = explorer.png
        assert _steady_rate(before) == pytest.approx(20, rel=0.02)
        explorer.controls["rate"].value = 30  # as the slider sets it
        after = explorer.wait()
        assert after is explorer.result and after is not before
        assert after.meta["clock"] == "virtual"
        assert after.experiment.strategy == rl.RateLimit(30) + rl.ConnectionLimit(10)
        assert _steady_rate(after) == pytest.approx(30, rel=0.02)
        assert explorer.shown_setting == {"rate": 30}
        assert explorer.png != first_png and explorer.png.startswith(b"\x89PNG")
        assert explorer.to_experiment() == exp.replace(
            strategy=rl.RateLimit(30) + rl.ConnectionLimit(10)
        )
        script = explorer.to_script()  # the setting on screen, as code to copy
        assert "AsyncLimiter(30.0, 1.0)" in script and "TCPConnector(limit=10" in script
    finally:
        explorer.close()


def test_connections_and_latency_give_the_crossover() -> None:
    """Below the crossover the connections bind: throughput = connections / latency."""
    smooth_60 = rl.RateLimit(1, period_s=1 / 60)  # 60/s without aiolimiter's first burst
    exp = rl.Experiment(target=TARGET, requests=300, workers=50, seed=1,
                        strategy=smooth_60 + rl.ConnectionLimit(10))  # fmt: skip
    explorer = rl.explore(exp, SERVER, connections=(1, 50), latency_s=(0.01, 1.0))
    try:
        result = explorer.set(connections=4, latency_s=0.2)
        assert explorer.server is not None and explorer.server.latency == rl.Fixed(0.2)
        rate = rl.summary(result).iloc[0]["steady_rate_per_s"]
        assert rate == pytest.approx(4 / 0.2, rel=0.03)
        assert rl.summary(result).iloc[0]["peak_in_flight"] == 4
    finally:
        explorer.close()


def test_a_change_during_a_computation_supersedes_it() -> None:
    """Three changes while the first is computed: the one in between is never computed,
    the first one's result is dropped, and only the latest is drawn and kept."""
    gate, entered = threading.Event(), threading.Event()
    asked: list[float] = []

    def simulate(exp: rl.Experiment, server: rl.LocalServer | None) -> rl.Result:
        rate = exp.strategy.parts[0].max_rate
        asked.append(rate)
        if rate == 21:
            entered.set()
            assert gate.wait(30)
        return rl.simulate(exp, server, progress=False)

    exp = rl.Experiment(target=TARGET, requests=40, workers=5, seed=1, strategy=rl.RateLimit(20))
    explorer = rl.explore(exp, SERVER, simulate=simulate, rate=(5, 60))
    try:
        explorer.controls["rate"].value = 21
        assert entered.wait(30)  # the worker is computing rate 21
        explorer.controls["rate"].value = 22
        explorer.controls["rate"].value = 23
        gate.set()
        result = explorer.wait()
        assert asked == [20, 21, 23]  # 22 was superseded before it was taken
        assert [generation for generation, _ in explorer.latencies] == [0, 3]  # 21 dropped
        assert result.experiment.strategy == rl.RateLimit(23)
        assert explorer.shown_setting == {"rate": 23}
    finally:
        gate.set()
        explorer.close()


def test_pin_and_a_setting_seen_before_redraw_without_simulating_again() -> None:
    calls: list[rl.Experiment] = []

    def simulate(exp: rl.Experiment, server: rl.LocalServer | None) -> rl.Result:
        calls.append(exp)
        return rl.simulate(exp, server, progress=False)

    exp = rl.Experiment(target=TARGET, requests=60, workers=5, seed=1, strategy=rl.RateLimit(20))
    explorer = rl.explore(exp, SERVER, simulate=simulate, rate=(5, 60))
    try:
        plain = explorer.png
        label = explorer.pin()
        explorer.wait()
        assert label == "pinned: rate=20" and explorer.pins == [label]
        assert len(calls) == 1  # the pin redrew the same Result
        assert explorer.png != plain  # ... with the ghost line
        assert "simulated before" in explorer._status.value
        first = explorer.result
        explorer.set(rate=40)
        assert len(calls) == 2 and explorer.pins == [label]
        assert explorer.set(rate=20) is first and len(calls) == 2  # seen before: kept
        explorer.clear_pins()
        explorer.wait()
        assert explorer.pins == []
    finally:
        explorer.close()


def test_set_refuses_a_name_that_is_not_a_control_or_a_value_off_the_slider() -> None:
    exp = rl.Experiment(target=TARGET, requests=20, seed=1, strategy=rl.RateLimit(20))
    explorer = rl.explore(exp, SERVER, rate=(5, 60))
    try:
        with pytest.raises(rl.ConfigError) as info:
            explorer.set(connections=3)
        assert info.value.parameter == "connections"
        with pytest.raises(rl.ConfigError, match=r"in 5\.0\.\.60\.0"):
            explorer.set(rate=100)  # the slider would clamp it silently to 60
        assert explorer.controls["rate"].value == 20
    finally:
        explorer.close()


def test_run_it_for_real_runs_the_setting_against_a_local_server() -> None:
    exp = rl.Experiment(target=TARGET, requests=30, workers=5, seed=1,
                        strategy=rl.RateLimit(40) + rl.ConnectionLimit(3))  # fmt: skip
    server = rl.LocalServer(latency=rl.Fixed(0.02), seed=1)
    explorer = rl.explore(exp, server, connections=(1, 10))
    try:
        explorer.set(connections=2)
        simulated_png = explorer.png
        explorer.run_real(wait=True)
        assert explorer.real_error is None
        real = explorer.real_result
        assert real is not None and real.meta.get("clock") != "virtual"
        assert len(real.df) == 30 and (real.df["status"] == 200).all()
        assert real.experiment.target.startswith("http://127.0.0.1:")
        assert real.experiment.strategy == rl.RateLimit(40) + rl.ConnectionLimit(2)
        assert rl.summary(real).iloc[0]["peak_in_flight"] <= 2
        assert explorer.png != simulated_png  # drawn over the simulation
        assert "real run" in explorer._status.value
        explorer.set(connections=3)  # another setting: the real run is not drawn over it
        assert "real run" not in explorer._status.value
    finally:
        explorer.close()


def test_the_display_carries_the_widget_and_a_static_figure() -> None:
    import base64

    exp = rl.Experiment(target=TARGET, requests=20, seed=1, strategy=rl.RateLimit(20))
    explorer = rl.explore(exp, SERVER, rate=(5, 60))
    try:
        bundle = explorer._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert base64.b64decode(bundle["image/png"]) == explorer.png
        assert bundle["text/plain"] == "Explorer(rate=20)"
    finally:
        explorer.close()
