"""``result.state`` saved with the run and read back; ``rl.plot_state`` draws it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ratelab as rl
from ratelab.analysis.files import STATE_KEY, empty_state
from ratelab.errors import ResultFileError

URL = "http://127.0.0.1:9"  # simulated: never contacted


@pytest.fixture(scope="module")
def result() -> rl.Result:
    exp = rl.Experiment(target=URL, requests=40, workers=20,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(3), seed=1)  # fmt: skip
    server = rl.LocalServer(latency=rl.Uniform(0.05, 0.1), seed=1)
    return rl.simulate(exp, server, progress=False)


def test_the_state_is_saved_and_read_back_exactly(result: rl.Result, tmp_path: Path) -> None:
    assert len(result.state) > 0
    path = result.save(tmp_path / "run.parquet")
    assert STATE_KEY in pq.ParquetFile(path).schema_arrow.metadata
    back = rl.load(path)
    pd.testing.assert_frame_equal(back.state, result.state)


def test_a_file_without_state_loads_with_an_empty_frame(result: rl.Result, tmp_path: Path) -> None:
    path = result.save(tmp_path / "run.parquet")
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    del meta[STATE_KEY]  # as written before the state was sampled
    pq.write_table(table.replace_schema_metadata(meta), path)
    back = rl.load(path)
    pd.testing.assert_frame_equal(back.state, empty_state())
    assert list(back.state.columns) == ["t_s", "guard", "quantity", "value"]
    no_state = rl.Result(df=result.df, experiment=result.experiment, meta=result.meta)
    assert no_state.save(tmp_path / "none.parquet")
    assert STATE_KEY not in pq.ParquetFile(tmp_path / "none.parquet").schema_arrow.metadata


def test_a_damaged_state_is_named_on_loading(result: rl.Result, tmp_path: Path) -> None:
    path = result.save(tmp_path / "run.parquet")
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    wrong = result.state.assign(value=result.state["value"].astype(str))  # not numbers
    sink = pa.BufferOutputStream()
    t = pa.Table.from_pandas(wrong, preserve_index=False)
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    import base64

    meta[STATE_KEY] = base64.b64encode(sink.getvalue().to_pybytes())
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(ResultFileError, match="limiter state has columns"):
        rl.load(path)
    meta[STATE_KEY] = b"not base64 at all!"
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(ResultFileError, match="limiter state is damaged"):
        rl.load(path)


def test_plot_state_on_an_axes_draws_one_step_line_per_quantity(result: rl.Result) -> None:
    fig, ax = plt.subplots()
    try:
        assert rl.plot_state(result, ax=ax) is ax
        gids = sorted(line.get_gid() for line in ax.get_lines())
        assert gids == ["state RateLimit(20) level", "state RateLimit(20) waiters",
                        "state pool in_use", "state pool queued"]  # fmt: skip
        level = next(ln for ln in ax.get_lines() if ln.get_gid().endswith("level"))
        x, y = level.get_data()
        rows = result.state[(result.state.guard == "RateLimit(20)")
                            & (result.state.quantity == "level")]  # fmt: skip
        assert list(x) == list(rows.t_s) and list(y) == list(rows.value)
        ax.clear()
        rl.plot_state(result, ax=ax, guard="pool")
        assert {ln.get_label() for ln in ax.get_lines()} == {"in_use", "queued"}
        with pytest.raises(ValueError, match=r"guard='Nope\(\)' was not sampled"):
            rl.plot_state(result, ax=ax, guard="Nope()")
    finally:
        plt.close(fig)


def test_plot_state_figure_puts_the_state_under_the_timeline(result: rl.Result) -> None:
    fig = rl.plot_state(result)
    try:
        axes = fig.axes
        assert len(axes) == 4  # throughput, concurrency, RateLimit(20), pool
        assert [ax.get_title() for ax in axes[2:]] == ["RateLimit(20)", "connection pool"]
        shared = axes[0].get_shared_x_axes()
        assert all(shared.joined(axes[0], ax) for ax in axes[1:])
        sent = [ln for ln in axes[0].get_lines() if ln.get_gid() == "sent"]
        assert len(sent[0].get_xdata()) == result.df.sent_s.notna().sum()
    finally:
        plt.close(fig)
