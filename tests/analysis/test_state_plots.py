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


@pytest.fixture(scope="module")
def split() -> rl.Result:
    """A two-process result as ``run_processes`` merges it (two simulated children, the
    second started 0.3 s after the first)."""
    from ratelab.client.processes import _merge

    exp = rl.Experiment(target=URL, requests=80, workers=20, processes=2, seed=1,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(3))  # fmt: skip
    server = rl.LocalServer(latency=rl.Uniform(0.05, 0.1), seed=1)
    kids = {}
    for k in (0, 1):
        part = exp.replace(requests=40, workers=10, seed=1 + k, processes=1)
        kids[k] = rl.simulate(part, server, progress=False)
        kids[k].meta["t0_monotonic"] = 100.0 + 0.3 * k
    return _merge(exp, kids, [0, 40], interrupted=False)


def test_plot_state_draws_each_process_its_own_lines(split: rl.Result) -> None:
    state = split.state
    fig, ax = plt.subplots()
    try:
        rl.plot_state(split, ax=ax, guard="RateLimit(20)")
        lines = {ln.get_gid(): ln for ln in ax.get_lines()}
        assert sorted(lines) == [f"state RateLimit(20) {q} process {k}"
                                 for q in ("level", "waiters") for k in (0, 1)]  # fmt: skip
        for q, k in [("level", 0), ("level", 1), ("waiters", 1)]:
            line = lines[f"state RateLimit(20) {q} process {k}"]
            rows = state[(state.guard == "RateLimit(20)") & (state.quantity == q)
                         & (state.process == k)]  # fmt: skip
            assert list(line.get_xdata()) == list(rows.t_s)
            assert list(line.get_ydata()) == list(rows.value)
            assert line.get_color() == f"C{k}"  # the colour is the process
            assert line.get_linestyle() == ("-" if q == "level" else "--")  # the style: quantity
        assert min(lines["state RateLimit(20) level process 1"].get_xdata()) >= 0.3  # its start
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["level", "waiters", "process 0", "process 1"]
    finally:
        plt.close(fig)


def test_plot_state_of_a_split_run_and_of_one_of_its_processes(split: rl.Result) -> None:
    fig = rl.plot_state(split)
    try:
        assert [ax.get_title() for ax in fig.axes[2:]] == [
            "RateLimit(20), in each process", "connection pool, in each process"]  # fmt: skip
        assert fig.get_suptitle().endswith("(2 processes)")
        assert len([ln for ln in fig.axes[3].get_lines() if ln.get_gid()]) == 4  # 2 x 2
    finally:
        plt.close(fig)
    fig = rl.plot_state(split, process=1)
    try:
        assert fig.get_suptitle().endswith("(process 1 of 2)")
        own = split.df[split.df.process == 1]
        sent = next(ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "sent")
        assert sorted(sent.get_xdata()) == sorted(own.sent_s.dropna())  # its records only
        gids = sorted(ln.get_gid() for ln in fig.axes[2].get_lines())
        assert gids == ["state RateLimit(20) level", "state RateLimit(20) waiters"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match=r"process=5 has no samples: the run has \[0, 1\]"):
        rl.plot_state(split, process=5)


def test_plot_state_refuses_a_process_of_a_run_in_one(result: rl.Result) -> None:
    with pytest.raises(ValueError, match="not split across processes"):
        rl.plot_state(result, process=0)
