"""``Experiment(cost=)`` and ``RateLimit(unit=)`` as plain data, and the costs refused before
a run (issue 14 item 1)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import ratelab as rl
from ratelab.records.schema import COLUMNS
from ratelab.testing import make_frame

URL = "http://127.0.0.1:9"
TOKENS = rl.RateLimit(30_000, period_s=60, unit="tokens")


def _exp(**kw: Any) -> rl.Experiment:
    return rl.Experiment(target=URL, **kw)


def test_cost_is_plain_data() -> None:
    exp = _exp(cost=rl.Uniform(200, 2000), strategy=TOKENS + rl.RateLimit(500, period_s=60))
    assert exp.to_dict()["cost"] == {"type": "Uniform", "low_s": 200.0, "high_s": 2000.0}
    assert rl.Experiment.from_dict(exp.to_dict()) == exp
    assert pickle.loads(pickle.dumps(exp)) == exp
    assert "cost=Uniform(200, 2000)" in repr(exp)
    assert repr(exp.strategy) == (
        "RateLimit(30000, period_s=60, unit='tokens') + RateLimit(500, period_s=60)"
    )
    # a number is a fixed cost; the TOML/CLI form of a distribution works too
    assert _exp(cost=500).cost == rl.Fixed(500)
    assert _exp(cost="uniform:200,2000").cost == rl.Uniform(200, 2000)
    # no cost: nothing in the plain data (older files lack it and load as before)
    assert "cost" not in _exp().to_dict() and _exp().cost is None


def test_a_tokens_limit_counts_tokens_not_requests() -> None:
    assert TOKENS.steady_rate_per_s is None  # it bounds requests/s only through the costs
    assert TOKENS.token_capacity == 30_000
    assert rl.RateLimit(5).token_capacity is None
    assert _exp(strategy=TOKENS, cost=1000).strategy.rate_limit_per_s is None


@pytest.mark.parametrize(
    ("kw", "parameter", "says"),
    [
        ({"cost": -5}, "cost", ">= 0"),
        ({"cost": rl.Uniform(200, 40_000), "strategy": TOKENS}, "cost", "at most 30000"),
        ({"cost": 30_001, "strategy": TOKENS}, "cost", "at most 30000"),
        ({"cost": rl.Exponential(500), "strategy": TOKENS}, "cost", "no upper bound"),
        ({"cost": rl.LogNormal(500, 1), "strategy": rl.AllOf(TOKENS)}, "cost", "no upper bound"),
        ({"strategy": TOKENS}, "cost", "counts tokens"),
        ({"cost": "gamma:1"}, "cost", "must be one of"),
    ],
)
def test_costs_a_run_could_not_send_are_refused_before_it(
    kw: dict[str, Any], parameter: str, says: str
) -> None:
    with pytest.raises(rl.ConfigError) as info:
        _exp(**kw)
    assert info.value.parameter == parameter
    assert says in str(info.value)


def test_what_a_tokens_bucket_can_hold_is_accepted() -> None:
    assert _exp(cost=rl.Uniform(200, 30_000), strategy=TOKENS).cost == rl.Uniform(200, 30_000)
    assert _exp(cost=rl.LogNormal(500, 0), strategy=TOKENS).cost is not None  # sigma 0: fixed
    assert _exp(cost=rl.Exponential(500)).cost is not None  # no tokens bucket: any cost
    with pytest.raises(rl.ConfigError) as info:
        rl.RateLimit(10, unit="bytes")
    assert info.value.parameter == "RateLimit(unit)"


def test_the_cost_column_is_in_the_schema_and_make_frame() -> None:
    assert COLUMNS["cost"][0] == "float64"
    df = make_frame(status=[200, 429])
    assert df.cost.isna().all() and str(df.cost.dtype) == "float64"
    assert make_frame(cost=[5, 7]).cost.tolist() == [5.0, 7.0]


def test_a_result_saved_before_costs_loads_with_a_nan_cost_column(tmp_path: Any) -> None:
    # a file from before the cost column: write one without it, read it back
    import numpy as np

    from ratelab.analysis import files

    df = make_frame(status=[200, 200, 429]).drop(columns="cost")
    exp = _exp(requests=3)
    path = tmp_path / "old.parquet"
    files.write_result(path, df=df, experiment=exp, meta={})
    back = files.read_result(path).df
    assert list(back.columns) == list(COLUMNS)
    assert np.isnan(back.cost.to_numpy()).all() and str(back.cost.dtype) == "float64"
