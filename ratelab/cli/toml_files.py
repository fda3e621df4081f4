"""Experiment and sweep files in TOML: reading them, and building what they describe.

An experiment file uses the names of :class:`~ratelab.experiment.experiment.Experiment`; a
``[server]`` table (the keys in :data:`SERVER_KEYS`) makes an embedded
:class:`~ratelab.server.local.LocalServer` the target. A sweep file has an
``[experiment]`` table, an optional ``[server]`` table, a ``[grid]`` table and an optional
``[plot]`` table (:func:`check_tables`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratelab.cli.status import UsageError
from ratelab.errors import ConfigError

if TYPE_CHECKING:
    from ratelab.server.local import LocalServer

__all__ = ["SERVER_KEYS", "SIMULATED_TARGET", "check_tables", "experiment_from_toml", "read_toml"]

#: The keys of a ``[server]`` table: LocalServer's options. ``rate_limit`` takes tables of
#: ServerRateLimit's arguments (``{limit = 30000, window_s = 60, unit = "tokens"}``) or
#: strings (``"20/1s"``, ``"30000 tokens/1m"``); ``headers`` a header style or ``"none"``
#: (TOML has no null); ``profile`` a table ``{kind = "openai", rpm = 60, tpm = 30000}``
#: (``kind``: a function of ``rl.profiles``, the rest its arguments).
SERVER_KEYS = (
    "latency", "seed", "host", "port", "rate_limit", "max_concurrency", "overload_status",
    "faults", "headers", "actual_cost", "profile",
)  # fmt: skip

_PROFILES = ("openai", "anthropic", "github")


def _profile_from(value: object) -> object:
    from ratelab.server import profiles

    valid = (
        f"must be a table such as {{kind = 'openai', rpm = 60, tpm = 30000}}; kinds: {_PROFILES}"
    )
    if not isinstance(value, Mapping) or value.get("kind") not in _PROFILES:
        raise ConfigError("server.profile", value, valid)
    kwargs = {k: v for k, v in value.items() if k != "kind"}
    try:
        return getattr(profiles, value["kind"])(**kwargs)
    except TypeError as e:
        raise ConfigError("server.profile", value, f"{valid} ({e})") from e


def read_toml(path: str | Path) -> dict[str, Any]:
    """The file's tables; a missing, unreadable or invalid file raises UsageError."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:  # a binary file: TOML is UTF-8 text
        raise UsageError(f"{path}: invalid TOML: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None


def _server_from(table: object) -> LocalServer:
    from ratelab.server.local import LocalServer

    if not isinstance(table, Mapping):
        raise ConfigError("server", table, f"must be a table with keys {list(SERVER_KEYS)}")
    for key in table:
        if key not in SERVER_KEYS:
            raise ConfigError(
                f"server.{key}", table[key], f"is not a server option; valid: {list(SERVER_KEYS)}"
            )
    options = dict(table)
    if options.get("headers") == "none":
        options["headers"] = None
    if "profile" in options:
        options["profile"] = _profile_from(options["profile"])
    return LocalServer(**options)


#: The target of a simulated run whose ``[server]`` table is the model (never contacted).
SIMULATED_TARGET = "http://127.0.0.1:8080"


def experiment_from_toml(
    fields: Mapping[str, Any], server: object = None, *, simulate: bool = False
) -> tuple[Any, LocalServer | None]:
    """Build an Experiment from a TOML table; a ``[server]`` table becomes its target.

    ``simulate=True``: the ``[server]`` table's LocalServer is built but not started (it is
    the simulated server's model), and the target is :data:`SIMULATED_TARGET`."""
    import dataclasses

    from ratelab.experiment.experiment import Experiment

    if not isinstance(fields, Mapping):
        raise ConfigError("experiment", fields, "must be a table of Experiment fields")
    data = dict(fields)
    known = sorted(f.name for f in dataclasses.fields(Experiment))
    for key in data:
        if key not in known:
            hint = "The server's latency goes in a [server] table" if key == "latency" else ""
            raise ConfigError(key, data[key], f"is not a field; valid: {known}", hint)
    local = None
    if server is not None:
        if "target" in data:
            raise ConfigError(
                "target",
                data["target"],
                "leave it out when a [server] table starts an embedded server",
            )
        local = _server_from(server)
        data["target"] = SIMULATED_TARGET if simulate else local
    elif "target" not in data:
        raise ConfigError(
            "target",
            None,
            "is required: a URL such as http://127.0.0.1:8080, "
            "or a [server] table for an embedded LocalServer",
        )
    return Experiment.from_dict(data), local


def check_tables(data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Raise ConfigError for a top-level table of a sweep file that is not ``allowed``."""
    for key in data:
        if key not in allowed:
            raise ConfigError(key, data[key], f"is not a table of a sweep file; valid: {allowed}")
