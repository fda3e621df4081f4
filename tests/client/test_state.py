"""The limiters' state over time (``result.state``), on the virtual clock: every sample is
checked against the strategy's own definition, exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import ratelab as rl
import ratelab.client.watch.sampler as sampler_mod
from ratelab.client.engine import Engine
from ratelab.errors import ConfigError, RunError
from ratelab.testing import ScriptedTransport, run_virtual

URL = "http://127.0.0.1:9"  # never contacted: the scripted transport answers
NS = 1e-9


def _state(strategy: rl.Strategy, *, requests: int = 20, latency_s: float = 1.0,
           **kw: Any) -> pd.DataFrame:  # fmt: skip
    exp = rl.Experiment(target=URL, requests=requests, workers=requests, strategy=strategy)
    engine = Engine(exp, base_url=URL, transport=ScriptedTransport(latency_s=latency_s), **kw)
    run_virtual(engine.run())
    return engine.state_frame()


def _series(state: pd.DataFrame, guard: str, quantity: str) -> pd.DataFrame:
    rows = state[(state.guard == guard) & (state.quantity == quantity)]
    return rows[["t_s", "value"]].reset_index(drop=True)


def test_aiolimiter_level_after_a_burst_falls_by_one_per_interval() -> None:
    # RateLimit(20): an empty bucket lets a burst of 20 through at once (level 20), then
    # leaks 20 per second: one per 0.05 s, the sampling interval
    state = _state(rl.RateLimit(20), requests=20, latency_s=1.0)
    assert list(state.columns) == ["t_s", "guard", "quantity", "value"]
    level = _series(state, "RateLimit(20)", "level")
    on_grid = level[level.t_s < 1.0 - NS]  # the run ends at 1.0 s (one last sample)
    assert len(on_grid) == 20
    assert on_grid.t_s.to_numpy() == pytest.approx(0.05 * np.arange(20), abs=NS)
    assert on_grid.value.to_numpy() == pytest.approx(20.0 - np.arange(20), abs=NS)
    assert level.value.iloc[-1] == pytest.approx(0.0, abs=NS)  # at 1.0 s: empty again
    assert (_series(state, "RateLimit(20)", "waiters").value == 0).all()


def test_a_saturated_limiter_refills_to_full_at_each_admission() -> None:
    # 40 at once: 20 through at 0, then one every 0.05 s. Sampled off that grid (every
    # 0.0437 s), the level is full after each admission and leaks 20/s until the next:
    # 20 - 20 * (t - 0.05 j) with j = floor(t / 0.05); the waiters are 20 - j.
    state = _state(rl.RateLimit(20), requests=40, latency_s=0.0, state_interval_s=0.0437)
    level = _series(state, "RateLimit(20)", "level")
    waiters = _series(state, "RateLimit(20)", "waiters")
    inside = (level.t_s > 0) & (level.t_s < 0.99)
    t = level.t_s[inside].to_numpy()
    assert len(t) == 23  # t = 0 (a picosecond in) to 0.9614
    j = np.floor(t / 0.05 + 1e-9)
    assert level.value[inside].to_numpy() == pytest.approx(20 - 20 * (t - 0.05 * j), abs=1e-6)
    assert waiters.value[inside].to_numpy() == pytest.approx(20 - j, abs=NS)


def test_semaphore_and_pool_state_count_holders_and_the_queue() -> None:
    state = _state(rl.Concurrency(5) + rl.ConnectionLimit(3), requests=20, latency_s=1.0)
    first = state[state.t_s == state.t_s.min()]
    got = {(str(g), str(q)): v for g, q, v in first[["guard", "quantity", "value"]].to_numpy()}
    assert got == {
        ("Concurrency(5)", "holders"): 5,
        ("Concurrency(5)", "waiters"): 15,
        ("pool", "in_use"): 3,
        ("pool", "queued"): 2,  # the 5 holders ask the pool for 3 connections
    }


@pytest.mark.parametrize(
    ("strategy", "quantity", "first"),
    [
        (rl.TokenBucket(10, burst=5), "tokens", 0.0),  # 5 taken at once, the rest wait
        (rl.SlidingWindow(4, window_s=1.0), "waiters", 6.0),  # 4 through, 6 wait
        (rl.Adaptive(start_rate_per_s=10), "rate_per_s", 10.0),
    ],
)
def test_the_small_limiters_report_their_own_quantity(
    strategy: rl.Strategy, quantity: str, first: float
) -> None:
    state = _state(strategy, requests=10, latency_s=0.5)
    series = _series(state, repr(strategy), quantity)
    assert series.value.iloc[0] == pytest.approx(first, abs=NS)
    assert len(_series(state, repr(strategy), "waiters")) == len(series)
    if quantity == "waiters":  # the window's own count, too
        assert len(_series(state, repr(strategy), "in_window")) == len(series)


def test_state_interval_none_samples_nothing_and_bad_values_are_refused() -> None:
    assert _state(rl.RateLimit(20), state_interval_s=None).empty
    for bad in (0, -1, float("nan"), "fast", True):
        with pytest.raises(ConfigError, match="state_interval_s"):
            rl.simulate(rl.Experiment(target=URL, requests=1), progress=False,
                        state_interval_s=bad)  # fmt: skip


def test_a_coarser_interval_is_used_on_the_same_grid() -> None:
    state = _state(rl.RateLimit(20), requests=20, latency_s=1.0, state_interval_s=0.25)
    level = _series(state, "RateLimit(20)", "level")
    assert level.value.to_numpy()[:4] == pytest.approx([20, 15, 10, 5], abs=NS)


def test_long_runs_thin_the_samples_and_double_the_interval(monkeypatch: Any) -> None:
    monkeypatch.setattr(sampler_mod, "MAX_TICKS", 8)
    state = _state(rl.RateLimit(20), requests=20, latency_s=1.0)
    level = _series(state, "RateLimit(20)", "level")
    t = level.t_s.to_numpy()
    assert len(t) <= 8 + 2
    # whatever survived lies on the doubled grids and still obeys the definition
    assert level.value.to_numpy()[:-1] == pytest.approx(20 - t[:-1] / 0.05, abs=1e-6)
    assert np.diff(t[:-1]).min() >= 0.2 - NS  # 0.05 doubled twice: 8 ticks -> 4 -> ...


class _Broken(rl.Strategy):
    def guard(self) -> rl.Guard:
        class G(rl.Guard):
            def state(self) -> dict[str, float]:
                raise KeyError("no state today")

        return G()

    def __repr__(self) -> str:
        return "Broken()"


def test_a_state_that_raises_ends_the_run_naming_it() -> None:
    exp = rl.Experiment(target=URL, requests=5, workers=1, strategy=_Broken())
    engine = Engine(exp, base_url=URL, transport=ScriptedTransport(latency_s=0.1))
    with pytest.raises(RunError, match=r"guard Broken\(\)\.state") as info:
        run_virtual(engine.run())
    assert isinstance(info.value.__cause__, KeyError)


def test_simulate_and_the_result_carry_the_state() -> None:
    exp = rl.Experiment(target=URL, requests=30, workers=10,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(2), seed=1)  # fmt: skip
    result = rl.simulate(exp, progress=False)
    guards = set(result.state.guard.astype(str))
    assert guards == {"RateLimit(20)", "pool"}
    pool = _series(result.state, "pool", "in_use")
    assert pool.value.max() <= 2 and pool.value.max() > 0


def _child(k: int, t0: float, **kw: Any) -> rl.Result:
    """Process ``k`` of a two-process run, made on the virtual clock: its Result as a child
    hands it in (own clock, own t0)."""
    exp = rl.Experiment(target=URL, requests=30, workers=5, seed=k,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(2))  # fmt: skip
    engine = Engine(exp, base_url=URL, transport=ScriptedTransport(latency_s=0.05), **kw)
    store, meta = run_virtual(engine.run())
    meta["t0_monotonic"] = t0  # where this child's clock started, on the shared clock
    return rl.Result(df=store.to_frame(), experiment=exp, meta=meta,
                     headers=store.headers_frame(), state=engine.state_frame())  # fmt: skip


def test_merged_state_is_every_process_on_the_one_merged_clock(tmp_path: Any) -> None:
    from ratelab.client.processes import PROCESS_COLUMN, _merge

    t0 = {0: 500.25, 1: 500.0}  # process 1 started first: 0 on the merged clock
    kids = {k: _child(k, t0[k]) for k in (0, 1)}
    whole = rl.Experiment(target=URL, requests=60, workers=10, processes=2,
                          strategy=rl.RateLimit(20) + rl.ConnectionLimit(2))  # fmt: skip
    merged = _merge(whole, kids, [0, 30], interrupted=False)
    state = merged.state
    assert list(state.columns) == ["t_s", "guard", "quantity", "value", PROCESS_COLUMN]
    assert state[PROCESS_COLUMN].dtype == np.int16
    assert state.t_s.is_monotonic_increasing
    assert set(state[PROCESS_COLUMN]) == set(merged.df[PROCESS_COLUMN]) == {0, 1}
    for k, kid in kids.items():
        shift = t0[k] - min(t0.values())
        assert merged.meta["process_meta"][k]["t0_shift_s"] == shift
        own = state[state[PROCESS_COLUMN] == k].reset_index(drop=True)
        assert len(own) == len(kid.state) > 0
        # the very shift of its records: t + shift, computed the same way, bit for bit
        ids = merged.df[PROCESS_COLUMN] == k
        assert np.array_equal(merged.df.loc[ids, "done_s"].to_numpy(),
                              kid.df["done_s"].to_numpy() + shift)  # fmt: skip
        assert np.array_equal(own.t_s.to_numpy(), kid.state.t_s.to_numpy() + shift)
        assert own.value.tolist() == kid.state.value.tolist()
        assert own.guard.astype(str).tolist() == kid.state.guard.astype(str).tolist()
        # its first sample at its own start, its last once its last request was done
        assert own.t_s.iloc[0] == pytest.approx(shift, abs=NS)
        assert own.t_s.iloc[-1] >= merged.df.loc[ids, "done_s"].max()
        # each process's own bucket (RateLimit(20) per process): bounded by 20
        level = own[own.quantity == "level"].value
        assert 15 < level.max() <= 20 + NS
    # the file keeps it, process column and all
    back = rl.load(merged.save(tmp_path / "two.parquet"))
    pd.testing.assert_frame_equal(back.state, state)


def test_merged_state_without_samples_keeps_the_process_column(tmp_path: Any) -> None:
    from ratelab.client.processes import PROCESS_COLUMN, _merge

    kids = {k: _child(k, 100.0 + k, state_interval_s=None) for k in (0, 1)}
    whole = rl.Experiment(target=URL, requests=60, workers=10, processes=2)
    merged = _merge(whole, kids, [0, 30], interrupted=False)
    assert merged.state.empty
    assert list(merged.state.columns) == ["t_s", "guard", "quantity", "value", PROCESS_COLUMN]
    back = rl.load(merged.save(tmp_path / "none.parquet"))
    pd.testing.assert_frame_equal(back.state, merged.state)
