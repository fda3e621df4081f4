"""Result files (save/load round trip, bad files, atomic writes) and Result's display."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import ratelab.analysis.files as files_mod
import ratelab.analysis.metrics as metrics_mod
from ratelab.analysis.files import MARKER_KEY, SCHEMA_VERSION
from ratelab.analysis.metrics import summary
from ratelab.analysis.result import Result, load
from ratelab.client.runner import run
from ratelab.errors import ResultFileError
from ratelab.experiment.distributions import Uniform
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.strategies import ConnectionLimit, RateLimit
from ratelab.server.local import LocalServer


@pytest.fixture(scope="module")
def runs(server: LocalServer) -> dict[str, Result]:
    """Two small real runs: one with failures (HTTP 503 and client timeouts, so ``error``
    has a category), one clean (``error`` has no categories at all)."""
    mixed = Experiment(
        target=server,
        endpoints={"/get": 0.6, "/status/503": 0.2, "/delay/1": 0.2},
        requests=30,
        workers=5,
        think_time=Uniform(0.0, 0.005),
        strategy=RateLimit(400) + ConnectionLimit(3),
        timeout_s=0.1,
        seed=1,
        name="mixed <run> & co",
    )
    clean = Experiment(target=server, requests=12, workers=3, strategy=RateLimit(400), seed=2)
    return {"mixed": run(mixed, progress=False), "clean": run(clean, progress=False)}


def _same(a: Result, b: Result) -> None:
    pd.testing.assert_frame_equal(a.df, b.df, check_categorical=True, check_exact=True)
    for col in a.df.columns:
        assert b.df[col].dtype == a.df[col].dtype, col
        if isinstance(a.df[col].dtype, pd.CategoricalDtype):
            cats_a, cats_b = a.df[col].cat.categories, b.df[col].cat.categories
            assert cats_b.dtype == cats_a.dtype, col
            assert cats_b.tolist() == cats_a.tolist(), col
    assert a.server_log is not None and b.server_log is not None
    pd.testing.assert_frame_equal(
        a.server_log, b.server_log, check_categorical=True, check_exact=True
    )
    assert b.meta == a.meta
    assert b.experiment == a.experiment.replace(target=a.experiment.target_url)


@pytest.mark.parametrize("which", ["mixed", "clean"])
def test_round_trip_is_exact(runs: dict[str, Result], which: str, tmp_path: Path) -> None:
    original = runs[which]
    path = original.save(tmp_path / "deep" / "er" / f"{which}.parquet")  # creates parents
    assert path.is_file()
    loaded = load(path)
    _same(original, loaded)
    assert loaded.label == original.label
    assert isinstance(loaded.experiment.target, str)  # the LocalServer became its URL
    assert loaded.experiment.target == original.experiment.target_url
    assert Result.load(path).meta == original.meta


def test_round_trip_keeps_failures_and_categories(runs: dict[str, Result], tmp_path: Path) -> None:
    original = runs["mixed"]
    df = original.df
    # the run really has both kinds of failure, and the clean run an empty error category
    assert (df["status"] == 503).any()
    assert "TimeoutError" in df["error"].cat.categories
    assert len(runs["clean"].df["error"].cat.categories) == 0
    loaded = load(original.save(tmp_path / "r.parquet"))
    assert loaded.df["attempt"].dtype == np.int16
    assert loaded.df["status"].dtype == np.int16
    assert (loaded.df["error"] == "TimeoutError").sum() == (df["error"] == "TimeoutError").sum()
    assert loaded.experiment.timeout_s == 0.1
    assert loaded.experiment.strategy == RateLimit(400) + ConnectionLimit(3)


def test_meta_with_tuples_int_keys_and_arrays_round_trips(
    runs: dict[str, Result], tmp_path: Path
) -> None:
    r = runs["clean"]
    meta = {
        **r.meta,
        "adaptive_rate": [(0.0, 10.0), (0.5, 5.0)],  # what an Adaptive run records
        "by_status": {200: 10, 503: 2},
        "nested": {"pair": (1, "a"), "none": None, "__tuple__": "literal key"},
        "array": np.array([1, 2, 3], dtype=np.int16),
        "count": np.int64(7),
    }
    loaded = load(Result(r.df, r.experiment, meta, r.server_log).save(tmp_path / "m.parquet"))
    array = loaded.meta.pop("array")
    assert array.dtype == np.int16 and array.tolist() == [1, 2, 3]
    assert loaded.meta == {k: v for k, v in meta.items() if k != "array"}
    assert loaded.meta["adaptive_rate"][1] == (0.5, 5.0)
    assert isinstance(loaded.meta["count"], int)


def test_file_is_plain_parquet_with_a_readable_header(
    runs: dict[str, Result], tmp_path: Path
) -> None:
    path = runs["mixed"].save(tmp_path / "r.parquet")
    plain = pd.read_parquet(path)  # any Parquet reader gets the records
    assert list(plain.columns) == list(runs["mixed"].df.columns)
    assert len(plain) == len(runs["mixed"].df)
    header = json.loads(pq.read_schema(path).metadata[MARKER_KEY])
    assert header["schema_version"] == SCHEMA_VERSION
    assert header["experiment"]["name"] == "mixed <run> & co"


def test_save_replaces_an_existing_file(runs: dict[str, Result], tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    runs["mixed"].save(path)
    runs["clean"].save(path)
    assert load(path).label == runs["clean"].label
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]


# --------------------------------------------------------------------------- bad files


def _message(path: Path) -> str:
    with pytest.raises(ResultFileError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message  # every message names the file
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in _message(tmp_path / "nope.parquet")


def test_parquet_that_is_not_a_ratelab_result(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1, 2, 3]}).to_parquet(path)
    assert "not a ratelab result" in _message(path)


def test_truncated_file(runs: dict[str, Result], tmp_path: Path) -> None:
    good = runs["mixed"].save(tmp_path / "good.parquet")
    data = good.read_bytes()
    bad = tmp_path / "truncated.parquet"
    bad.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _message(bad)


def test_not_parquet_at_all(tmp_path: Path) -> None:
    path = tmp_path / "notes.parquet"
    path.write_text("hello\n" * 100)
    assert "not a readable Parquet file" in _message(path)


def test_newer_schema_version(runs: dict[str, Result], tmp_path: Path) -> None:
    path = runs["clean"].save(tmp_path / "r.parquet")
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    header = json.loads(meta[MARKER_KEY])
    header["schema_version"] = 99
    meta[MARKER_KEY] = json.dumps(header).encode()
    newer = tmp_path / "newer.parquet"
    pq.write_table(table.replace_schema_metadata(meta), newer)
    message = _message(newer)
    assert f"written by a newer ratelab (schema 99 > {SCHEMA_VERSION}): upgrade ratelab" in message


# --------------------------------------------------------------------------- atomic save


def test_failed_save_leaves_nothing_behind(
    runs: dict[str, Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out" / "r.parquet"

    def broken_writer(table: object, where: object, **kwargs: object) -> None:
        where.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_mod.pq, "write_table", broken_writer)
    with pytest.raises(OSError, match="No space left"):
        runs["mixed"].save(target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary file either


def test_failed_save_keeps_the_previous_file(
    runs: dict[str, Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = runs["clean"].save(tmp_path / "r.parquet")
    before = target.read_bytes()

    def broken_writer(table: object, where: object, **kwargs: object) -> None:
        where.write(b"garbage")  # type: ignore[attr-defined]
        raise RuntimeError("interrupted mid-write")

    monkeypatch.setattr(files_mod.pq, "write_table", broken_writer)
    with pytest.raises(RuntimeError):
        runs["mixed"].save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]


# --------------------------------------------------------------------------- display


def test_repr_html_has_label_and_counts_escaped(runs: dict[str, Result]) -> None:
    r = runs["mixed"]
    page = r._repr_html_()
    assert "mixed &lt;run&gt; &amp; co" in page
    assert "<run>" not in page  # the label is escaped
    assert "<td" in page and "<table" in page
    n_ok = int(summary(r)["ok"].iloc[0])
    assert f"{n_ok} / {30 - n_ok}" in page  # one attempt per request here: ok / errors
    assert ">30<" in page  # the request count cell


def test_repr_is_short(runs: dict[str, Result]) -> None:
    text = repr(runs["clean"])
    assert text.count("\n") <= 2 and len(text) < 300
    assert "RateLimit(400)" in text and "12 requests" in text
    assert "12 rows" in text and str(runs["clean"]) == text
    assert "interrupted" not in text


def _fresh(r: Result) -> Result:
    """The same run as a new Result: nothing cached on it yet."""
    return Result(df=r.df, experiment=r.experiment, meta=r.meta, server_log=r.server_log)


def test_repr_does_not_scan_the_frame(
    runs: dict[str, Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_summary(*args: object, **kwargs: object) -> None:
        raise AssertionError("repr must not summarise the frame")

    monkeypatch.setattr(metrics_mod, "summary", no_summary)
    monkeypatch.setattr(Result, "_headline", no_summary)
    r = _fresh(runs["mixed"])
    text = repr(r)
    assert repr(r.label) in text and "30 requests" in text and f"{len(r.df)} rows" in text
    assert str(r) == text
    stopped = Result(df=r.df, experiment=r.experiment, meta={**r.meta, "interrupted": True})
    assert "interrupted" in repr(stopped) and "30 requests planned" in repr(stopped)


def test_repr_html_summarises_once(
    runs: dict[str, Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = metrics_mod.summary

    def counting(*args: Any, **kwargs: Any) -> pd.DataFrame:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(metrics_mod, "summary", counting)
    r = _fresh(runs["mixed"])
    first = r._repr_html_()
    assert r._repr_html_() == first
    assert len(calls) == 1
    repr(r)
    assert len(calls) == 1


def test_convenience_methods_delegate(runs: dict[str, Result]) -> None:
    r = runs["mixed"]
    pd.testing.assert_frame_equal(r.summary(), summary(r))
    half = r.summary(window_s=0.5)
    assert "max_sent_0.5s" in half.columns and "max_sent_1s" not in half.columns
    assert len(r.throughput(window_s=0.5)) >= 1
    assert {"t_s", "in_flight"} <= set(r.concurrency().columns)
    w = r.windows(window_s=0.5)
    assert w.limit == 200.0  # RateLimit(400) over half a second
    assert w.complied == (w.max_sent <= 200)
    assert runs["clean"].windows(limit=3).complied is False  # 12 requests sent at once


@pytest.mark.parametrize("path", ["", "   ", None, 3])
def test_save_and_load_need_a_file_path(path: Any) -> None:
    from ratelab.errors import ConfigError
    from ratelab.testing import make_frame

    result = Result(
        df=make_frame(sent_s=[0.0], done_s=[0.1]),
        experiment=Experiment(target="http://127.0.0.1:9"),
        meta={},
    )
    with pytest.raises(ConfigError) as e:
        result.save(path)
    assert e.value.parameter == "path"
    with pytest.raises(ConfigError) as e:
        load(path)
    assert e.value.parameter == "path"


def _tiny_result() -> Result:
    from ratelab.testing import make_frame

    return Result(
        df=make_frame(sent_s=[0.0, 0.1, 0.2], done_s=[0.1, 0.2, 0.3]),
        experiment=Experiment(target="http://127.0.0.1:9", requests=3),
        meta={"run": "abc"},
    )


def test_a_flipped_bit_in_any_data_page_is_an_error_not_a_value(tmp_path: Path) -> None:
    # issue 17 item 8: 196 of 200 single-bit flips in data pages loaded silently
    good = _tiny_result().save(tmp_path / "good.parquet")
    assert len(load(good).df) == 3
    raw = good.read_bytes()
    md = pq.ParquetFile(good).metadata
    flipped = 0
    for i in range(md.num_columns):
        col = md.row_group(0).column(i)
        start = col.dictionary_page_offset or col.data_page_offset
        # the last byte of the chunk: page payload (after its header), never the header
        at = start + col.total_compressed_size - 1
        bad = bytearray(raw)
        bad[at] ^= 0x01
        path = tmp_path / f"flip{i}.parquet"
        path.write_bytes(bytes(bad))
        with pytest.raises(ResultFileError, match=r"flip\d+\.parquet"):
            load(path)
        flipped += 1
    assert flipped == md.num_columns


def test_a_ratelab_file_without_the_records_columns_is_refused(tmp_path: Path) -> None:
    # issue 17 item 7: a file with only a foo column loaded, then rl.summary raised KeyError
    path = files_mod.write_result(
        tmp_path / "foo.parquet",
        df=pd.DataFrame({"foo": [1, 2]}),
        experiment=Experiment(target="http://127.0.0.1:9"),
        meta={},
    )
    with pytest.raises(ResultFileError, match=r"lack the columns \['request_id'"):
        load(path)


_DEEP = "[" * 100_000 + "]" * 100_000  # 100,000-deep JSON


@pytest.mark.parametrize(
    "damage",
    [
        lambda h: h.update(columns=[1, 2]),
        lambda h: h.update(columns={"status": {"dtype": "no-such-dtype"}}),
        lambda h: h.update(meta="__DEEP__"),
        lambda h: h.update(experiment=[]),
    ],
)
def test_damaged_metadata_is_a_result_file_error(tmp_path: Path, damage: Any) -> None:
    good = _tiny_result().save(tmp_path / "good.parquet")
    table = pq.read_table(good)
    metadata = dict(table.schema.metadata)
    header = json.loads(metadata[MARKER_KEY])
    damage(header)
    text = json.dumps(header).replace('"__DEEP__"', _DEEP)
    metadata[MARKER_KEY] = text.encode()
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), bad)
    with pytest.raises(ResultFileError, match=r"bad\.parquet"):
        load(bad)
