"""Config fuzzing: whatever a user passes to an Experiment or a strategy, the only error that
escapes is ConfigError, and it names the parameter."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ratelab as rl

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.dictionaries(st.text(max_size=6), st.floats(allow_nan=True), max_size=3),
    st.sampled_from(["/get", "http://127.0.0.1:1", "uniform:0.1,0.2", "fixed:-1", "GET", "/x"]),
)

FIELDS = [
    "target", "endpoints", "requests", "workers", "think_time", "strategy", "arrivals",
    "timeout_s", "method", "seed", "name", "polite",
]  # fmt: skip

STRATEGIES = {
    rl.RateLimit: ["max_rate", "period_s"],
    rl.ConnectionLimit: ["limit", "per_host"],
    rl.Concurrency: ["n", "endpoint"],
    rl.TokenBucket: ["rate_per_s", "burst"],
    rl.SlidingWindow: ["limit", "window_s"],
    rl.Retry: ["max_attempts", "backoff_s", "max_backoff_s", "jitter", "honor_retry_after"],
    rl.Adaptive: [
        "start_rate_per_s",
        "min_rate_per_s",
        "max_rate_per_s",
        "increase",
        "decrease",
        "cooldown_s",
    ],
    rl.Uniform: ["low_s", "high_s"],
    rl.Fixed: ["value_s"],
    rl.Exponential: ["mean_s"],
    rl.LogNormal: ["median_s", "sigma"],
    rl.Constant: ["rate_per_s"],
    rl.Poisson: ["rate_per_s"],
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=anything)
def test_experiment_fields_only_raise_config_error(field: str, value: object) -> None:
    kwargs = {"target": "http://127.0.0.1:1", field: value}
    try:
        exp = rl.Experiment(**kwargs)
    except rl.ConfigError as e:
        assert e.parameter.split("[")[0].split(".")[0] in (field, "requests", "strategy") or (
            field in ("think_time", "strategy", "arrivals") and "(" in e.parameter
        ), (field, e.parameter)
    else:
        assert exp.workers >= 1 and exp.requests >= 0 and exp.timeout_s > 0
        assert math.isfinite(exp.timeout_s)


@settings(max_examples=400, deadline=None)
@given(cls=st.sampled_from(list(STRATEGIES)), data=st.data())
def test_strategy_and_distribution_fields_only_raise_config_error(cls, data) -> None:
    names = STRATEGIES[cls]
    # every field gets a value (a missing required argument is Python's own TypeError)
    kwargs = {n: data.draw(anything, label=n) for n in names}
    try:
        cls(**kwargs)
    except rl.ConfigError as e:
        assert e.parameter.startswith(cls.__name__ + "("), e.parameter
