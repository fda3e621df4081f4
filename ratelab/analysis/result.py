"""Result: what one run recorded — the frame, the experiment that made it, and metadata.

    result = rl.run(exp)
    result.save("data/recipe.parquet")     # one Parquet file: records + experiment + meta
    same = rl.load("data/recipe.parquet")  # dtypes, experiment, meta and server log intact

The file is a plain Parquet file of the records (any Parquet reader can open it). The
experiment (``Experiment.to_dict()``), ``meta``, the column dtypes and a schema version sit
in the Arrow schema metadata under the key ``b"ratelab"`` (JSON); the LocalServer's log,
when there is one, is embedded under ``b"ratelab.server_log"`` as a compressed Arrow IPC
stream (base64). Saving is atomic: a temporary file in the same directory, then
``os.replace``.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ratelab.errors import ConfigError, ResultFileError
from ratelab.experiment.experiment import Experiment

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ratelab.analysis.metrics import WindowStats

__all__ = ["MARKER_KEY", "SCHEMA_VERSION", "SERVER_LOG_KEY", "Result", "load"]

#: Version of the file layout written by :meth:`Result.save`; :func:`load` refuses newer.
SCHEMA_VERSION = 1
#: Schema-metadata key of the ratelab header (JSON).
MARKER_KEY = b"ratelab"
#: Schema-metadata key of the embedded server log (base64 of a zstd Arrow IPC stream).
SERVER_LOG_KEY = b"ratelab.server_log"
_FORMAT = "ratelab.analysis.result"
# Thrift limits when reading the footer: an embedded server log of a million-row run is
# tens of MB, above pyarrow's default string limit of 100 MB only for enormous runs.
_THRIFT_STRING_LIMIT = 2**31 - 1


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


# --------------------------------------------------------------------------- Result


@dataclass(frozen=True, eq=False, repr=False)
class Result:
    """One run: ``df`` (one row per request attempt, see :mod:`ratelab.records.store`),
    ``experiment``, ``meta`` (versions, platform, start time, seed, wall time, interrupted)
    and ``server_log`` (the LocalServer's own view, on the same clock; None otherwise)."""

    df: pd.DataFrame
    experiment: Experiment
    meta: dict[str, Any] = field(default_factory=dict)
    server_log: pd.DataFrame | None = None

    @property
    def label(self) -> str:
        """The run's name in tables and legends (the strategy's repr unless named)."""
        return self.experiment.label

    @property
    def interrupted(self) -> bool:
        """True when the run was cancelled before every request finished."""
        return bool(self.meta.get("interrupted", False))

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the run to one Parquet file (atomically; parent directories are created).

        Returns the path. :func:`load` reads it back exactly: the frame with its dtypes,
        the experiment (a LocalServer target is stored as its URL), ``meta`` and the
        server log.
        """
        path = Path(path)
        header = {
            "format": _FORMAT,
            "schema_version": SCHEMA_VERSION,
            "label": self.label,
            "experiment": self.experiment.to_dict(),
            "meta": _encode(self.meta),
            "columns": _dtype_spec(self.df),
            "server_log_columns": (
                _dtype_spec(self.server_log) if self.server_log is not None else None
            ),
        }
        table = _table(self.df)
        metadata = dict(table.schema.metadata or {})
        metadata[MARKER_KEY] = _to_json(header)
        if self.server_log is not None:
            metadata[SERVER_LOG_KEY] = _encode_server_log(self.server_log)
        table = table.replace_schema_metadata(metadata)

        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: a fresh file of our own; mode 0o666 less the umask, like any new file
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                pq.write_table(table, f, compression="zstd")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Result:
        """Read a file written by :meth:`save` (same as :func:`ratelab.analysis.result.load`)."""
        return load(path)

    # -- analysis ------------------------------------------------------------------------
    def summary(self, *, window_s: float = 1.0) -> pd.DataFrame:
        """One row of headline numbers (see :func:`ratelab.analysis.metrics.summary`)."""
        from ratelab.analysis.metrics import summary

        return summary(self, window_s=window_s)

    def throughput(self, *, window_s: float = 1.0) -> pd.DataFrame:
        """Sent and completed per second in bins (:func:`ratelab.analysis.metrics.throughput`)."""
        from ratelab.analysis.metrics import throughput

        return throughput(self, window_s=window_s)

    def concurrency(self) -> pd.DataFrame:
        """Waiting and in-flight counts over time (``ratelab.analysis.metrics.concurrency``)."""
        from ratelab.analysis.metrics import concurrency

        return concurrency(self)

    def latency(self) -> np.ndarray:
        """Latencies in seconds (see :func:`ratelab.analysis.metrics.latency`)."""
        from ratelab.analysis.metrics import latency

        return latency(self)

    def phase_means(self) -> pd.DataFrame:
        """Mean time per phase (see :func:`ratelab.analysis.metrics.phase_means`)."""
        from ratelab.analysis.metrics import phase_means

        return phase_means(self)

    def windows(self, *, window_s: float = 1.0, limit: float | None = None) -> WindowStats:
        """The busiest sliding window of sent requests (:func:`~ratelab.analysis.metrics.windows`).

        Without ``limit``, a strategy with a rate limit is checked against
        ``rate_limit_per_s * window_s``.
        """
        from ratelab.analysis.metrics import windows

        if limit is None:
            rate = self.experiment.strategy.rate_limit_per_s
            if rate is not None:
                limit = rate * window_s
        return windows(self, window_s=window_s, limit=limit)

    def dashboard(self, **kwargs: Any) -> Figure:
        """The one-run figure (see :func:`ratelab.analysis.plots.dashboard`)."""
        from ratelab.analysis.plots import dashboard

        return dashboard(self, **kwargs)

    # -- display -------------------------------------------------------------------------
    def _headline(self) -> dict[str, Any]:
        """The numbers shown by ``repr`` and in notebooks."""
        row = self.summary().iloc[0]
        return {
            "requests": int(row["requests"]),
            "ok": int(row["ok"]),
            "errors": int(row["errors"]),
            "rate_per_s": float(row["rate_per_s"]),
            "steady_rate_per_s": float(row["steady_rate_per_s"]),
            "p50_ms": float(row["latency_p50_s"]) * 1e3,
            "p99_ms": float(row["latency_p99_s"]) * 1e3,
            "peak_in_flight": int(row["peak_in_flight"]),
            "wall_s": self.meta.get("wall_s"),
        }

    def __repr__(self) -> str:
        h = self._headline()
        state = ", interrupted" if self.interrupted else ""
        return (
            f"<Result {self.label!r}{state}: {h['requests']} requests, {h['ok']} ok, "
            f"{h['errors']} errors\n"
            f"  rate {_num(h['rate_per_s'], '/s')} (steady {_num(h['steady_rate_per_s'], '/s')}), "
            f"latency p50 {_num(h['p50_ms'], ' ms')}, p99 {_num(h['p99_ms'], ' ms')}, "
            f"peak in flight {h['peak_in_flight']}, wall {_seconds(h['wall_s'])}>"
        )

    __str__ = __repr__

    def _repr_html_(self) -> str:
        h = self._headline()
        rows = [
            ("requests", f"{h['requests']:,}"),
            ("ok / errors", f"{h['ok']:,} / {h['errors']:,}"),
            ("achieved rate", _num(h["rate_per_s"], "/s")),
            ("steady rate", _num(h["steady_rate_per_s"], "/s")),
            ("latency p50 / p99", f"{_num(h['p50_ms'])} / {_num(h['p99_ms'], ' ms')}"),
            ("peak in flight", str(h["peak_in_flight"])),
            ("wall time", _seconds(h["wall_s"])),
        ]
        if self.interrupted:
            rows.append(("interrupted", "yes: partial result"))
        cells = "".join(
            f'<tr><th style="text-align:left">{html.escape(k)}</th>'
            f'<td style="text-align:right">{html.escape(v)}</td></tr>'
            for k, v in rows
        )
        return (
            '<div class="ratelab-result">'
            f"<strong>{html.escape(self.label)}</strong>"
            f'<table style="margin-top:0.3em">{cells}</table></div>'
        )


def _num(x: float, unit: str = "") -> str:
    """3 significant digits (no decimals from 100 up) and the unit; ``n/a`` when undefined."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return (f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}") + unit


def _seconds(x: Any) -> str:
    if not isinstance(x, int | float) or not math.isfinite(x):
        return "n/a"
    return f"{x:.2f} s"


# --------------------------------------------------------------------------- load


def _fail(path: Path, what: str) -> ResultFileError:
    return ResultFileError(f"cannot load {str(path)!r}: {what}")


def load(path: str | os.PathLike[str]) -> Result:
    """Read a result written by :meth:`Result.save` (``rl.load``).

    Raises :class:`~ratelab.errors.ResultFileError`, naming the file, when it is missing,
    is not a ratelab result, is truncated or corrupt, or was written by a newer ratelab.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a file")
    try:
        pf = pq.ParquetFile(path, thrift_string_size_limit=_THRIFT_STRING_LIMIT)
    except (pa.ArrowException, OSError) as e:
        raise _fail(path, f"not a readable Parquet file (truncated or corrupt?): {e}") from e
    with pf:
        return _read(path, pf)


def _read(path: Path, pf: pq.ParquetFile) -> Result:
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

    server_log = None
    raw_log = metadata.get(SERVER_LOG_KEY)
    if raw_log is not None:
        try:
            server_log = _decode_server_log(raw_log)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise _fail(path, f"the embedded server log is damaged ({e})") from e
        server_log = _restore_dtypes(server_log, header.get("server_log_columns") or {})

    try:
        experiment = Experiment.from_dict(header["experiment"])
    except (ConfigError, KeyError, TypeError) as e:
        raise _fail(path, f"the saved experiment is invalid: {e}") from e
    meta = _decode(header.get("meta"))
    if not isinstance(meta, dict):
        raise _fail(path, "the ratelab metadata is damaged (meta is not a mapping)")
    return Result(df=df, experiment=experiment, meta=meta, server_log=server_log)
