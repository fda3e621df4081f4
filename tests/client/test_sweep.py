"""ratelab.client.sweep: grid checks, the summary table, interrupts, plot_sweep, and the
min(rate, connections / latency) law against a real LocalServer."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

from collections.abc import Iterator
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import ratelab.client.runner as runner_mod
from ratelab.analysis.metrics import SUMMARY_COLUMNS
from ratelab.analysis.result import Result
from ratelab.analysis.sweeps import SweepResult, axis_label, plot_sweep
from ratelab.client.sweep import sweep
from ratelab.errors import ConfigError
from ratelab.experiment.distributions import Fixed
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.strategies import ConnectionLimit, RateLimit
from ratelab.server.local import LocalServer


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def base(target: Any = "http://127.0.0.1:1", **kw: Any) -> Experiment:
    return Experiment(target=target, **{"requests": 5, "workers": 2, "seed": 1, **kw})


# --------------------------------------------------------------------------- the grid


def test_unknown_key_names_it_and_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        sweep(base(), progress=False, wrokers=[1, 2])
    assert info.value.parameter == "wrokers"
    message = str(info.value)
    assert "is not a sweep key" in message
    for valid in ("workers", "strategy", "think_time", "latency", "requests"):
        assert valid in message


def test_empty_list_and_scalar_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"workers=\[\] is invalid: must be a non-empty list"):
        sweep(base(), progress=False, workers=[])
    with pytest.raises(ConfigError, match=r"workers=4 is invalid: must be a list"):
        sweep(base(), progress=False, workers=4)


def test_latency_needs_a_local_target() -> None:
    with pytest.raises(ConfigError) as info:
        sweep(base("http://example.com", strategy=RateLimit(5)), progress=False, latency=[0.1])
    assert info.value.parameter == "latency"
    assert "LocalServer" in str(info.value) and "127.0.0.1" in str(info.value)


def test_every_point_is_checked_before_any_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Experiment] = []
    monkeypatch.setattr(runner_mod, "run", lambda exp, **kw: calls.append(exp))
    with pytest.raises(ConfigError, match="workers=0"):
        sweep(base(), progress=False, workers=[1, 0])
    with pytest.raises(ConfigError, match="latency"):
        sweep(base(), progress=False, latency=[0.1, "bogus:1"])
    assert calls == []


# --------------------------------------------------------------------------- real sweeps


def test_summary_has_one_row_per_point_in_grid_order(server: LocalServer) -> None:
    sw = sweep(
        base(server),
        progress=False,
        workers=[1, 3],
        think_time=[None, 0.001],
        strategy=[RateLimit(500), RateLimit(500) + ConnectionLimit(2)],
    )
    assert isinstance(sw, SweepResult) and not sw.interrupted
    assert len(sw.results) == len(sw.summary) == 8
    s = sw.summary
    assert list(s.columns[:3]) == ["workers", "think_time", "strategy"]
    assert list(s.columns[-len(SUMMARY_COLUMNS) :]) == list(SUMMARY_COLUMNS)
    assert s["workers"].tolist() == [1] * 4 + [3] * 4  # the last key varies fastest
    assert s["think_time"].tolist() == ["None", "None", "Fixed(0.001)", "Fixed(0.001)"] * 2
    assert s["strategy"].tolist() == ["RateLimit(500)", "RateLimit(500) + ConnectionLimit(2)"] * 4
    for (_, row), res in zip(s.iterrows(), sw.results, strict=True):
        assert res.experiment.workers == row["workers"]
        assert repr(res.experiment.strategy) == row["strategy"]
    assert (s["requests"] == 5).all() and (s["errors"] == 0).all()
    # a point with a 2-connection pool never has more than 2 in flight
    capped = s[s["strategy"].str.contains("ConnectionLimit")]
    assert (capped["peak_in_flight"] <= 2).all()


def test_latency_points_each_get_a_fresh_server() -> None:
    sw = sweep(base(LocalServer(), requests=4), progress=False, latency=[Fixed(0.02), 0.06])
    assert sw.summary["latency_s"].tolist() == [0.02, 0.06]
    assert sw.summary["latency"].tolist() == ["Fixed(0.02)", "Fixed(0.06)"]
    p50 = sw.summary["latency_p50_s"].to_numpy()
    assert p50[0] == pytest.approx(0.02, abs=0.015)
    assert p50[1] == pytest.approx(0.06, abs=0.015)
    urls = {r.experiment.target_url for r in sw.results}
    assert len(urls) == 2  # two servers
    for r in sw.results:
        assert r.server_log is not None and len(r.server_log) == 4


def test_rate_limit_and_connection_cap_give_min_of_both() -> None:
    """Steady throughput of a rate limit plus a connection cap is
    min(rate, connections / latency): 20/s below 0.5 s of latency, 10/latency above.

    Tolerance: +-15% on ``steady_rate_per_s`` (requests sent after the rate limit's first
    period). With a fixed latency and a cap of 10, completions come in batches of 10 once
    per latency period, which alone moves the estimate by up to ~8% in a 40-request run.

    The burst-free limiter, ``RateLimit(1, period_s=0.05)`` (20/s), follows the law at both
    latencies. ``RateLimit(20)``'s aiolimiter bucket starts empty and lets 20 extra requests
    through first: when the rate is what binds, a 40-request run is all burst (~40 in its
    first second), so it has no steady rate (NaN: nothing is sent after the first period);
    its cap-bound point is held to the law, and the burst itself is asserted.
    """
    burst_free = RateLimit(1, period_s=0.05) + ConnectionLimit(10)
    bursty = RateLimit(20) + ConnectionLimit(10)
    exp = Experiment(target=LocalServer(), requests=40, workers=20, seed=1)
    sw = sweep(exp, progress=False, strategy=[burst_free, bursty], latency=[0.25, 1.0])
    s = sw.summary.set_index(["strategy", "latency_s"])
    steady = s["steady_rate_per_s"]

    def law(latency: float) -> float:
        return min(20.0, 10.0 / latency)

    for latency in (0.25, 1.0):  # the rate binds, then the connection cap binds
        assert steady[(repr(burst_free), latency)] == pytest.approx(law(latency), rel=0.15)
    assert steady[(repr(bursty), 1.0)] == pytest.approx(law(1.0), rel=0.15)
    # the cap is what binds at 1 s: never more than 10 in flight
    assert (s["peak_in_flight"] <= 10).all()
    assert s.loc[(repr(burst_free), 1.0), "peak_in_flight"] == 10
    # aiolimiter's initial burst: ~2x the rate in the first second, vs 20 burst-free
    assert s.loc[(repr(bursty), 0.25), "max_sent_1s"] >= 30
    assert s.loc[(repr(burst_free), 0.25), "max_sent_1s"] <= 21
    assert math.isnan(steady[(repr(bursty), 0.25)])  # never left its burst


# --------------------------------------------------------------------------- interrupts


def test_keyboard_interrupt_returns_the_points_done(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = runner_mod.run
    calls = []

    def run(exp: Experiment, **kw: Any) -> Result:
        calls.append(exp)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run(exp, **kw)

    monkeypatch.setattr(runner_mod, "run", run)
    sw = sweep(base(server), progress=False, workers=[1, 2, 3])
    assert sw.interrupted and sw.partial is None
    assert len(calls) == 2  # the third point never started
    assert len(sw.results) == len(sw.summary) == 1
    assert sw.summary["workers"].tolist() == [1]


def test_interrupted_run_stops_the_sweep_and_is_kept_apart(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = runner_mod.run
    calls = []

    def run(exp: Experiment, **kw: Any) -> Result:
        calls.append(exp)
        r = real_run(exp, **kw)
        if len(calls) == 2:  # what rl.run returns after Ctrl-C: a partial, flagged Result
            return Result(r.df, r.experiment, {**r.meta, "interrupted": True}, r.server_log)
        return r

    monkeypatch.setattr(runner_mod, "run", run)
    sw = sweep(base(server), progress=False, workers=[1, 2, 3])
    assert sw.interrupted and len(calls) == 2
    assert len(sw.results) == 1 and sw.partial is not None and sw.partial.interrupted
    assert sw.partial.experiment.workers == 2


# --------------------------------------------------------------------------- plot


def test_axis_labels_carry_units() -> None:
    assert axis_label("latency_s") == "latency (s)"
    assert axis_label("steady_rate_per_s") == "steady rate (/s)"
    assert axis_label("latency_p50_s") == "latency p50 (s)"
    assert axis_label("workers") == "workers"


def test_plot_sweep_draws_a_line_per_hue() -> None:
    summary = pd.DataFrame(
        {
            "strategy": ["A"] * 3 + ["B"] * 3,
            "latency_s": [1.0, 0.25, 0.5] * 2,
            "steady_rate_per_s": [10.0, 20.0, 19.0, 9.0, 27.0, 18.0],
        }
    )
    ax = plot_sweep(
        summary,
        x="latency_s",
        y="steady_rate_per_s",
        hue="strategy",
        expected=lambda lat: np.minimum(20.0, 10.0 / lat),
    )
    lines = [ln for ln in ax.get_lines() if ln.get_gid() == "sweep"]
    assert [ln.get_label() for ln in lines] == ["A", "B"]
    assert all(ln.get_marker() == "o" for ln in lines)
    assert lines[0].get_xdata().tolist() == [0.25, 0.5, 1.0]  # sorted by x
    assert lines[0].get_ydata().tolist() == [20.0, 19.0, 10.0]
    (exp,) = [ln for ln in ax.get_lines() if ln.get_gid() == "expected"]
    assert exp.get_ydata()[0] == pytest.approx(20.0) and exp.get_ydata()[-1] == pytest.approx(10)
    assert ax.get_xlabel() == "latency (s)" and ax.get_ylabel() == "steady rate (/s)"
    assert ax.get_ylim()[0] == 0
    with pytest.raises(ConfigError, match="rate_per_s"):
        plot_sweep(summary, x="latency_s", y="rate_per_s")
