"""The reference runs kept in data/reference/: small, loadable, and true to their strategy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ratelab as rl

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "data" / "reference"
FILES = sorted(REFERENCE.glob("*.parquet"))


def test_there_are_six_and_each_is_small() -> None:
    assert len(FILES) == 6
    for path in FILES:
        assert path.stat().st_size < 1_000_000, path.name


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_loads_and_shows_what_its_strategy_bounds(path: Path) -> None:
    result = rl.load(path)
    df = result.df
    assert len(df) == 100 and (df.status == 200).all() and not result.interrupted
    row = rl.summary(result).iloc[0]
    strategy = result.experiment.strategy
    if strategy.connection_cap is not None:
        assert row["peak_in_flight"] <= strategy.connection_cap
    if strategy.concurrency_cap is not None:
        assert row["peak_in_flight"] <= strategy.concurrency_cap
    if strategy.rate_limit_per_s is not None:  # aiolimiter: a burst of r, then r per second
        assert row["max_sent_1s"] <= 2 * strategy.rate_limit_per_s
    if repr(strategy) == "Unlimited()":
        assert row["peak_in_flight"] == result.experiment.workers


def test_the_readme_snippet_runs(monkeypatch) -> None:
    text = (ROOT / "data" / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    monkeypatch.chdir(ROOT)
    scope: dict[str, object] = {}
    import matplotlib.pyplot as plt

    try:
        exec(compile(code.group(1), "data/README.md", "exec"), scope)
    finally:
        plt.close("all")
    assert len(scope["runs"]) == 6  # type: ignore[arg-type]
