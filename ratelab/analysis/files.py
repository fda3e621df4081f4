"""Result files: one Parquet file per run, written atomically and read back exactly.

    write_result(path, df=..., experiment=..., meta=..., server_log=...)   # Result.save
    parts = read_result(path)    # ResultParts(df, experiment, meta, server_log); rl.load

The file is a plain Parquet file of the records (any Parquet reader can open it). The
experiment (``Experiment.to_dict()``), ``meta``, the column dtypes and a schema version sit
in the Arrow schema metadata under the key ``b"ratelab"`` (JSON); the LocalServer's log,
when there is one, is embedded under ``b"ratelab.server_log"`` as a compressed Arrow IPC
stream (base64). Saving is atomic: a temporary file in the same directory, then
``os.replace``. A file that cannot be read back raises
:class:`~ratelab.errors.ResultFileError`, naming the file.

This module knows nothing of :class:`~ratelab.analysis.result.Result`: it takes and returns
the pieces, and ``Result.save`` / ``ratelab.analysis.result.load`` wrap it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ratelab.errors import ConfigError, ResultFileError
from ratelab.experiment.experiment import Experiment

__all__ = [
    "HEADERS_KEY",
    "MARKER_KEY",
    "SCHEMA_VERSION",
    "SERVER_LOG_KEY",
    "STATE_COLUMNS",
    "STATE_KEY",
    "STATE_PROCESS_COLUMN",
    "ResultFileError",
    "ResultParts",
    "empty_headers",
    "empty_state",
    "read_result",
    "write_result",
]

#: Version of the file layout written by :func:`write_result`; :func:`read_result` refuses newer.
SCHEMA_VERSION = 1
#: Schema-metadata key of the ratelab header (JSON).
MARKER_KEY = b"ratelab"
#: Schema-metadata key of the embedded server log (base64 of a zstd Arrow IPC stream).
SERVER_LOG_KEY = b"ratelab.server_log"
#: Schema-metadata key of the recorded response headers (same encoding as the server log;
#: absent when none were recorded, and in files written before they were).
HEADERS_KEY = b"ratelab.headers"
#: Schema-metadata key of the limiters' sampled state (``result.state``; same encoding;
#: absent when nothing was sampled, and in files written before it was).
STATE_KEY = b"ratelab.state"
#: ``result.state``'s columns and their dtypes (checked on loading).
STATE_COLUMNS = {"t_s": "float64", "guard": "category", "quantity": "category", "value": "float64"}
#: The column a multi-process run's state has after :data:`STATE_COLUMNS` (which process
#: sampled the row; ``ratelab.client.processes.PROCESS_COLUMN``), and its dtype.
STATE_PROCESS_COLUMN = ("process", "int16")
# The header's "format": the module that first wrote these files. Files carry it, so it
# stays as it is wherever the code lives.
_FORMAT = "ratelab.analysis.result"
# Thrift limits when reading the footer: an embedded server log of a million-row run is
# tens of MB, above pyarrow's default string limit of 100 MB only for enormous runs.
_THRIFT_STRING_LIMIT = 2**31 - 1


class ResultParts(NamedTuple):
    """What a result file holds: the pieces of a :class:`~ratelab.analysis.result.Result`."""

    df: pd.DataFrame
    experiment: Experiment
    meta: dict[str, Any]
    server_log: pd.DataFrame | None
    headers: pd.DataFrame | None = None
    state: pd.DataFrame | None = None


def empty_state() -> pd.DataFrame:
    """The limiters' state frame with no rows: t_s, guard, quantity, value."""
    return pd.DataFrame(
        {
            "t_s": np.zeros(0, np.float64),
            "guard": pd.Categorical([]),
            "quantity": pd.Categorical([]),
            "value": np.zeros(0, np.float64),
        }
    )


def empty_headers() -> pd.DataFrame:
    """The recorded-headers frame with no rows: request_id, attempt, name, value."""
    return pd.DataFrame(
        {
            "request_id": np.zeros(0, np.int64),
            "attempt": np.zeros(0, np.int16),
            "name": pd.Categorical([]),
            "value": pd.Series([], dtype=object),
        }
    )


# --------------------------------------------------------------------------- dtypes


def _dtype_spec(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per column: its dtype, and for categoricals the categories (values, dtype, order)."""
    spec: dict[str, dict[str, Any]] = {}
    for name, dtype in df.dtypes.items():
        entry: dict[str, Any] = {"dtype": str(dtype)}
        if isinstance(dtype, pd.CategoricalDtype):
            cats = dtype.categories
            entry["categories"] = [_plain(v) for v in cats.tolist()]
            entry["categories_dtype"] = str(cats.dtype)
            entry["ordered"] = bool(dtype.ordered)
        spec[str(name)] = entry
    return spec


def _restore_dtypes(df: pd.DataFrame, spec: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Give each column back the dtype it had when saved (Parquet loses some details:
    a categorical with no categories comes back as object, ``object`` categories as ``str``)."""
    out = {}
    for name in df.columns:
        col = df[name]
        entry = spec.get(str(name))
        if entry is not None and "categories" in entry:
            cats = pd.Index(entry["categories"], dtype=entry["categories_dtype"])
            if isinstance(col.dtype, pd.CategoricalDtype):  # recode by value (cheap)
                col = col.cat.set_categories(cats, ordered=entry["ordered"])
            else:  # e.g. no categories at all: read back as an all-missing object column
                values = col.astype(object).where(col.notna(), None)
                col = pd.Series(
                    pd.Categorical(values, categories=cats, ordered=entry["ordered"]),
                    index=col.index,
                    name=name,
                )
        elif entry is not None and str(col.dtype) != entry["dtype"]:
            col = col.astype(entry["dtype"])
        out[name] = col
    return pd.DataFrame(out, index=df.index, columns=df.columns)


def _plain(value: Any) -> Any:
    """A JSON-friendly form of numpy scalars and other odd values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


# JSON has no tuples, no non-string keys and no arrays: tag them so that ``meta`` (e.g.
# ``adaptive_rate``, a list of (t, rate) tuples) comes back equal to what was saved.
_TUPLE, _ITEMS, _ARRAY = "__tuple__", "__items__", "__ndarray__"


def _encode(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not {_TUPLE, _ITEMS, _ARRAY} & set(value):
            return {k: _encode(v) for k, v in value.items()}
        return {_ITEMS: [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, np.ndarray):
        return {_ARRAY: _encode(value.tolist()), "dtype": str(value.dtype)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)  # anything else is kept as its repr


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if _TUPLE in value:
        return tuple(_decode(v) for v in value[_TUPLE])
    if _ITEMS in value:
        return {_hashable(_decode(k)): _decode(v) for k, v in value[_ITEMS]}
    if _ARRAY in value:
        return np.array(_decode(value[_ARRAY]), dtype=value["dtype"])
    return {k: _decode(v) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _to_json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _table(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=None)


def _encode_server_log(log: pd.DataFrame) -> bytes:
    table = _table(log)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes())


def _decode_server_log(data: bytes) -> pd.DataFrame:
    with pa.ipc.open_stream(pa.py_buffer(base64.b64decode(data, validate=True))) as reader:
        return reader.read_all().to_pandas()


def _decode_embedded(path: Path, data: bytes, what: str) -> pd.DataFrame:
    """A frame embedded in the file's metadata, or ResultFileError saying ``what`` is damaged."""
    try:
        return _decode_server_log(data)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise _fail(path, f"{what} damaged ({e})") from e


# --------------------------------------------------------------------------- write


def write_result(
    path: str | os.PathLike[str],
    *,
    df: pd.DataFrame,
    experiment: Experiment,
    meta: dict[str, Any],
    server_log: pd.DataFrame | None = None,
    headers: pd.DataFrame | None = None,
    state: pd.DataFrame | None = None,
) -> Path:
    """Write one run to one Parquet file (atomically; parent directories are created).

    Returns the path. :func:`read_result` reads it back exactly: the frame with its dtypes,
    the experiment (a LocalServer target is stored as its URL), ``meta`` and the server log.
    """
    path = Path(path)
    header = {
        "format": _FORMAT,
        "schema_version": SCHEMA_VERSION,
        "label": experiment.label,
        "experiment": experiment.to_dict(),
        "meta": _encode(meta),
        "columns": _dtype_spec(df),
        "server_log_columns": _dtype_spec(server_log) if server_log is not None else None,
    }
    table = _table(df)
    metadata = dict(table.schema.metadata or {})
    metadata[MARKER_KEY] = _to_json(header)
    if server_log is not None:
        metadata[SERVER_LOG_KEY] = _encode_server_log(server_log)
    if headers is not None and len(headers):
        metadata[HEADERS_KEY] = _encode_server_log(headers)
    if state is not None and (len(state) or STATE_PROCESS_COLUMN[0] in state.columns):
        # a multi-process run's state is kept even with no rows: its `process` column stays
        metadata[STATE_KEY] = _encode_server_log(state)
    table = table.replace_schema_metadata(metadata)

    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: a fresh file of our own; mode 0o666 less the umask, like any new file
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            # page checksums: a flipped bit in the data is an error on reading, not a value
            pq.write_table(table, f, compression="zstd", write_page_checksum=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


# --------------------------------------------------------------------------- read


def _fail(path: Path, what: str) -> ResultFileError:
    return ResultFileError(f"cannot load {str(path)!r}: {what}")


def read_result(path: str | os.PathLike[str]) -> ResultParts:
    """Read a file written by :func:`write_result` (``Result.save``).

    Raises :class:`~ratelab.errors.ResultFileError`, naming the file, when it is missing,
    is not a ratelab result, is truncated or corrupt, or was written by a newer ratelab.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a file")
    try:
        pf = pq.ParquetFile(
            path, thrift_string_size_limit=_THRIFT_STRING_LIMIT, page_checksum_verification=True
        )
    except (pa.ArrowException, OSError) as e:
        raise _fail(path, f"not a readable Parquet file (truncated or corrupt?): {e}") from e
    with pf:
        try:
            parts = _read(path, pf)
        except ResultFileError:
            raise
        except (pa.ArrowException, OSError, ValueError, TypeError, KeyError, AttributeError,
                IndexError, OverflowError, RecursionError) as e:  # fmt: skip
            # damaged metadata (dtypes, meta tags, pandas metadata, deep JSON) or data
            raise _fail(path, f"the file is damaged ({type(e).__name__}: {e})") from e
    _check_columns(path, parts.df)
    return parts


def _add_later_columns(df: pd.DataFrame) -> None:
    """A file from before a column existed (``cost``): the column, filled, after ``bytes``
    (where the schema has it; a multi-process run's ``process`` column stays after)."""
    from ratelab.records.schema import COLUMNS, LATER_COLUMNS

    names = list(COLUMNS)
    for name, fill in LATER_COLUMNS.items():
        if name not in df.columns and names[names.index(name) - 1] in df.columns:
            at = df.columns.get_loc(names[names.index(name) - 1]) + 1
            df.insert(at, name, np.full(len(df), fill, COLUMNS[name][0]))  # type: ignore[arg-type]


def _check_columns(path: Path, df: pd.DataFrame) -> None:
    """Every column a Result needs (``records.schema.COLUMNS``), with its dtype."""
    from ratelab.records.schema import COLUMNS

    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise _fail(path, f"the records lack the columns {missing}: not a ratelab run's records")
    for name, (dtype, _unit, _meaning) in COLUMNS.items():
        if str(df[name].dtype) != dtype:
            raise _fail(
                path, f"the records' column {name!r} is {df[name].dtype}, not {dtype}: damaged"
            )


def _read(path: Path, pf: pq.ParquetFile) -> ResultParts:
    metadata = pf.schema_arrow.metadata or {}
    raw = metadata.get(MARKER_KEY)
    if raw is None:
        raise _fail(
            path,
            "a Parquet file, but not a ratelab result (no 'ratelab' metadata); "
            "results are written by Result.save()",
        )
    try:
        header = json.loads(raw)
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise ValueError("unexpected header")
        version = header["schema_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"schema_version={version!r}")
    except (ValueError, KeyError) as e:
        raise _fail(path, f"the ratelab metadata is damaged ({e})") from e
    if version > SCHEMA_VERSION:
        raise _fail(
            path,
            f"written by a newer ratelab (schema {version} > {SCHEMA_VERSION}): upgrade ratelab",
        )
    if version < 1:
        raise _fail(path, f"the ratelab metadata is damaged (schema_version={version})")
    try:
        df = pf.read().to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise _fail(path, f"the records cannot be read (truncated or corrupt?): {e}") from e
    df = _restore_dtypes(df, header.get("columns") or {})
    _add_later_columns(df)

    server_log = None
    raw_log = metadata.get(SERVER_LOG_KEY)
    if raw_log is not None:
        server_log = _decode_embedded(path, raw_log, "the embedded server log is")
        server_log = _restore_dtypes(server_log, header.get("server_log_columns") or {})

    headers = empty_headers()
    raw_headers = metadata.get(HEADERS_KEY)
    if raw_headers is not None:
        headers = _decode_embedded(path, raw_headers, "the recorded headers are")
        headers["attempt"] = headers["attempt"].astype(np.int16)
        headers["value"] = headers["value"].astype(object)

    state = empty_state()
    raw_state = metadata.get(STATE_KEY)
    if raw_state is not None:
        state = _decode_embedded(path, raw_state, "the sampled limiter state is")
        found = {c: str(state[c].dtype) for c in state.columns}
        if found not in (STATE_COLUMNS, dict([*STATE_COLUMNS.items(), STATE_PROCESS_COLUMN])):
            raise _fail(
                path,
                f"the sampled limiter state has columns {found}, not {STATE_COLUMNS} "
                f"(a multi-process run's with {STATE_PROCESS_COLUMN[0]!r}: "
                f"{STATE_PROCESS_COLUMN[1]} last)",
            )

    try:
        experiment = Experiment.from_dict(header["experiment"])
    except (ConfigError, KeyError, TypeError) as e:
        raise _fail(path, f"the saved experiment is invalid: {e}") from e
    meta = _decode(header.get("meta"))
    if not isinstance(meta, dict):
        raise _fail(path, "the ratelab metadata is damaged (meta is not a mapping)")
    return ResultParts(
        df=df, experiment=experiment, meta=meta, server_log=server_log, headers=headers,
        state=state,
    )  # fmt: skip
