"""Renamed parameters: the new names everywhere; the old keyword still works in code, with a
DeprecationWarning naming the new one; plain data with the old keys (saved results, TOML
files) loads silently."""

from __future__ import annotations

import dataclasses
import inspect
import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import ratelab as rl
from ratelab.analysis.files import MARKER_KEY
from ratelab.cli.toml_files import experiment_from_toml
from ratelab.experiment.distributions import as_distribution, parse_distribution
from ratelab.experiment.strategies import as_strategy

# (what the old code wrote, what it means now, the old keyword, the new one)
RENAMES: list[tuple[Callable[[], object], object, str, str]] = [
    (lambda: rl.RateLimit(20, per_s=0.5), rl.RateLimit(20, period_s=0.5), "per_s", "period_s"),
    (
        lambda: rl.SharedRateLimit(5, per_s=2),
        rl.SharedRateLimit(5, period_s=2),
        "per_s",
        "period_s",
    ),
    (
        lambda: rl.Adaptive(start_rate=5),
        rl.Adaptive(start_rate_per_s=5),
        "start_rate",
        "start_rate_per_s",
    ),
    (
        lambda: rl.Adaptive(min_rate=2),
        rl.Adaptive(min_rate_per_s=2),
        "min_rate",
        "min_rate_per_s",
    ),
    (
        lambda: rl.Adaptive(max_rate=50),
        rl.Adaptive(max_rate_per_s=50),
        "max_rate",
        "max_rate_per_s",
    ),
    (lambda: rl.Fixed(s=0.1), rl.Fixed(value_s=0.1), "s", "value_s"),
    (lambda: rl.Exponential(mean=0.1), rl.Exponential(mean_s=0.1), "mean", "mean_s"),
    (
        lambda: rl.LogNormal(median=0.1, sigma=0.5),
        rl.LogNormal(median_s=0.1, sigma=0.5),
        "median",
        "median_s",
    ),
]
IDS = [f"{type(new).__name__}.{old}" for _, new, old, _ in RENAMES]


@pytest.mark.parametrize(("old_code", "new", "old", "renamed"), RENAMES, ids=IDS)
def test_the_old_keyword_warns_naming_the_new_one(old_code, new, old: str, renamed: str) -> None:
    name = type(new).__name__
    message = rf"{name}\({old}=\.\.\.\) is deprecated: use {name}\({renamed}=\.\.\.\)"
    with pytest.warns(DeprecationWarning, match=message) as caught:
        built = old_code()
    assert built == new and repr(built) == repr(new)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(DeprecationWarning, match=rf"{name}\.{old} is deprecated: use {name}\."):
        assert getattr(built, old) == getattr(new, renamed)


@pytest.mark.parametrize(("old_code", "new", "old", "renamed"), RENAMES, ids=IDS)
def test_the_new_name_is_the_only_name(old_code, new, old: str, renamed: str) -> None:
    cls = type(new)
    names = [f.name for f in dataclasses.fields(cls)]
    assert renamed in names and old not in names
    assert renamed in inspect.signature(cls).parameters
    assert old not in inspect.signature(cls).parameters
    assert old not in new.to_dict() and renamed in new.to_dict()
    assert f"{old}=" not in repr(new)


@pytest.mark.parametrize(("old_code", "new", "old", "renamed"), RENAMES, ids=IDS)
def test_plain_data_with_the_old_key_loads_silently(old_code, new, old: str, renamed: str) -> None:
    data = new.to_dict()
    data[old] = data.pop(renamed)
    load = as_strategy if isinstance(new, rl.Strategy) else lambda d: as_distribution("x", d)
    assert load(data) == new  # filterwarnings = error: any warning would fail this


@pytest.mark.parametrize(("old_code", "new", "old", "renamed"), RENAMES, ids=IDS)
def test_old_and_new_name_together_is_an_error(old_code, new, old: str, renamed: str) -> None:
    cls, value = type(new), getattr(new, renamed)
    with pytest.raises(rl.ConfigError, match=f"is the old name of {renamed}") as info:
        cls(**{**_init_kwargs(new), old: value})
    assert info.value.parameter == f"{cls.__name__}({old})"
    data = {**new.to_dict(), old: value}
    load = as_strategy if isinstance(new, rl.Strategy) else lambda d: as_distribution("x", d)
    with pytest.raises(rl.ConfigError, match=f"give only {renamed}"):
        load(data)


def _init_kwargs(obj: object) -> dict[str, object]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


def test_positional_use_is_unchanged() -> None:
    assert rl.RateLimit(20, 0.5).period_s == 0.5
    assert rl.SharedRateLimit(5, 2).period_s == 2
    assert rl.Adaptive(5, 1, 50) == rl.Adaptive(
        start_rate_per_s=5, min_rate_per_s=1, max_rate_per_s=50
    )
    assert rl.Fixed(0.1).value_s == 0.1
    assert rl.Exponential(0.1).mean_s == 0.1
    assert rl.LogNormal(0.1, 0.5).median_s == 0.1
    assert rl.LogNormal(0.1, 0.5).mean_s == pytest.approx(0.1 * 2.718281828459045**0.125)
    positional = rl.RateLimit(20, 0.5)
    with pytest.raises(rl.ConfigError, match="old name of period_s"):
        rl.RateLimit(20, 0.5, per_s=0.5)  # type: ignore[call-arg]
    assert positional == rl.RateLimit(20, period_s=0.5)


def test_command_line_strings_are_unchanged() -> None:
    assert parse_distribution("exponential:0.1") == rl.Exponential(0.1)
    assert parse_distribution("lognormal:0.1,0.5") == rl.LogNormal(0.1, 0.5)
    assert parse_distribution("fixed:0.2") == parse_distribution("0.2") == rl.Fixed(0.2)


def test_a_bad_value_under_the_old_keyword_names_the_new_parameter() -> None:
    with pytest.warns(DeprecationWarning), pytest.raises(rl.ConfigError) as info:
        rl.RateLimit(20, per_s=0)
    assert info.value.parameter == "RateLimit(period_s)"
    with pytest.warns(DeprecationWarning), pytest.raises(rl.ConfigError) as info:
        rl.Adaptive(start_rate=0.5, min_rate_per_s=1)
    assert info.value.parameter == "Adaptive(start_rate_per_s)"
    assert "min_rate_per_s=1" in str(info.value)


def test_repr_uses_the_new_names() -> None:
    assert repr(rl.RateLimit(1, period_s=0.05)) == "RateLimit(1, period_s=0.05)"
    assert repr(rl.SharedRateLimit(5, period_s=2)) == "SharedRateLimit(5, period_s=2)"
    assert repr(rl.Adaptive()) == "Adaptive(start_rate_per_s=10, max_rate_per_s=1000)"
    for text in [
        "RateLimit(1, period_s=0.05)",
        "Adaptive(start_rate_per_s=10, max_rate_per_s=1000)",
    ]:
        assert repr(eval(text, {**vars(rl)})) == text


OLD_TOML = """
target = "http://127.0.0.1:9"
think_time = {type = "exponential", mean = 0.01}
strategy = [{type = "RateLimit", max_rate = 1, per_s = 0.05},
            {type = "Adaptive", start_rate = 5, min_rate = 1, max_rate = 50}]
"""


def test_an_experiment_file_with_the_old_names_loads_silently() -> None:
    exp, _ = experiment_from_toml(tomllib.loads(OLD_TOML))
    assert exp.think_time == rl.Exponential(mean_s=0.01)
    assert exp.strategy == rl.RateLimit(1, period_s=0.05) + rl.Adaptive(5, 1, 50)
    with rl.LocalServer(latency={"type": "lognormal", "median": 0.01, "sigma": 0.1}) as s:
        assert s.latency == rl.LogNormal(median_s=0.01, sigma=0.1)


def test_a_result_saved_with_the_old_names_loads(server: rl.LocalServer, tmp_path: Path) -> None:
    exp = rl.Experiment(
        target=server, requests=4, workers=2, think_time=rl.Fixed(0.001),
        strategy=rl.RateLimit(1, period_s=0.01) + rl.Adaptive(start_rate_per_s=100),
    )  # fmt: skip
    path = rl.run(exp, progress=False).save(tmp_path / "new.parquet")
    # rewrite the file as an older ratelab would have written it
    table = pq.read_table(path)
    metadata = dict(table.schema.metadata)
    header = json.loads(metadata[MARKER_KEY])
    header["experiment"]["think_time"] = {"type": "Fixed", "s": 0.001}
    header["experiment"]["strategy"] = {
        "type": "Combined",
        "parts": [
            {"type": "RateLimit", "max_rate": 1, "per_s": 0.01},
            {"type": "Adaptive", "start_rate": 100, "min_rate": 1, "max_rate": 1000,
             "increase": 1.0, "decrease": 0.5, "cooldown_s": 0.5},
        ],
    }  # fmt: skip
    metadata[MARKER_KEY] = json.dumps(header).encode()
    old = tmp_path / "old.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), old)
    loaded = rl.load(old)
    assert loaded.experiment.strategy == exp.strategy
    assert loaded.experiment.think_time == rl.Fixed(0.001)
