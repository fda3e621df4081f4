"""What each request carries, as plain data: the user's request function (by reference),
headers, a body (``json`` or ``data``), ``auth``, per-endpoint overrides, and the response
headers to record. Checked when an :class:`~ratelab.experiment.experiment.Experiment` is
built; secrets are redacted in its ``repr`` and ``to_dict``.

Secrets. ``auth`` and the values of the headers named ``Authorization``,
``Proxy-Authorization``, ``Cookie`` or ``*-key`` / ``*-token`` / ``*-secret`` are written as
:data:`REDACTED` in ``repr`` and ``to_dict`` (so never into a saved result file), while the
run sends the real values. An Experiment loaded from a file carries the literal
``"<redacted>"``: :func:`check_sendable` (called when a run starts) refuses to send it and
says how to supply the secret.

The request function is stored by reference: ``to_dict`` gives ``"module:qualname"`` and
``from_dict`` imports it. A lambda, a closure or a function defined in ``__main__`` (a
notebook, a script) runs in this process, but is recorded as :data:`NOT_IMPORTABLE` +
its name, which cannot run again (and ``processes > 1`` refuses it: the child processes
could not import it).
"""

from __future__ import annotations

import importlib
import inspect
import json as _json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ratelab.errors import ConfigError

__all__ = [
    "NOT_IMPORTABLE",
    "RATE_LIMIT_HEADERS",
    "RATE_LIMIT_PREFIXES",
    "REDACTED",
    "check_auth",
    "check_body",
    "check_endpoint_options",
    "check_headers",
    "check_record_headers",
    "check_request",
    "check_sendable",
    "function_ref",
    "is_secret_header",
    "redact_auth",
    "redact_headers",
    "request_to_plain",
]

#: What a secret becomes in ``repr`` and ``to_dict``.
REDACTED = "<redacted>"
#: The start of ``to_dict()["request"]`` for a function that cannot be imported again.
NOT_IMPORTABLE = "<not re-importable> "

_REQUEST_VALID = "must be an async function: async def fn(ctx) -> response"

#: Response headers recorded by default (lower case): the IETF draft's and the older
#: ``RateLimit-*`` names, and ``Retry-After``.
RATE_LIMIT_HEADERS = frozenset(
    {
        "ratelimit",
        "ratelimit-policy",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    }
)
#: ... and every header whose name starts with one of these (``X-RateLimit-*``, OpenAI's
#: ``x-ratelimit-remaining-requests`` / ``-tokens``, Anthropic's ``anthropic-ratelimit-*``).
RATE_LIMIT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")

_SECRET_NAMES = frozenset({"authorization", "proxy-authorization", "cookie"})
_SECRET_SUFFIXES = ("-key", "-token", "-secret")


# --------------------------------------------------------------------- request functions


def function_ref(fn: Callable[..., Any]) -> str | None:
    """``"module:qualname"`` if importing it gives ``fn`` back, else None (a lambda, a
    closure, a function of ``__main__``)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or module in ("__main__", "__mp_main__"):
        return None
    if "<" in qualname:  # <lambda>, <locals>
        return None
    try:
        return f"{module}:{qualname}" if _import_ref(module, qualname) is fn else None
    except Exception:
        return None


def _import_ref(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _is_async(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def check_request(value: object, *, processes: int) -> Callable[..., Any] | str | None:
    """``request=``: None, an async function, its ``"module:qualname"`` (imported now), or
    a recorded not-importable name (kept; :func:`check_sendable` refuses to run it)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.startswith(NOT_IMPORTABLE):
            return value
        module, sep, qualname = value.partition(":")
        if not sep or not module or not qualname:
            raise ConfigError("request", value, f"{_REQUEST_VALID}, or its 'module:qualname'")
        try:
            fn = _import_ref(module, qualname)
        except Exception as e:
            raise ConfigError(
                "request", value, f"cannot be imported ({type(e).__name__}: {e})"
            ) from e
        value = fn
    if not callable(value) or not _is_async(value):
        raise ConfigError("request", value, _REQUEST_VALID)
    if processes > 1 and function_ref(value) is None:  # type: ignore[arg-type]
        raise ConfigError(
            "request", value,
            "with processes > 1 it must be importable by the child processes: define it at "
            "module level in a module (not a lambda, a closure, a notebook or __main__)",
        )  # fmt: skip
    return value  # type: ignore[return-value]


def request_to_plain(value: Callable[..., Any] | str | None) -> str | None:
    """``to_dict``'s form of ``request``: ``"module:qualname"``, or a not-importable note."""
    if value is None or isinstance(value, str):
        return value
    ref = function_ref(value)
    if ref is not None:
        return ref
    name = f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', repr(value))}"
    return f"{NOT_IMPORTABLE}{name}"


# --------------------------------------------------------------------- headers, bodies


def is_secret_header(name: str) -> bool:
    """Whether a header's value is a secret (redacted in repr and saved files)."""
    n = name.lower()
    return n in _SECRET_NAMES or n.endswith(_SECRET_SUFFIXES)


def check_headers(parameter: str, value: object) -> dict[str, str] | None:
    """Headers: a mapping of str -> str (None: none)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(parameter, value, "must be a mapping of header name -> value (str)")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise ConfigError(
                f"{parameter}[{k!r}]", v, "header names and values must be non-empty str / str"
            )
        if any(c in k for c in " \t\r\n:") or "\r" in v or "\n" in v:
            raise ConfigError(f"{parameter}[{k!r}]", v, "no spaces, ':' or newlines in names")
        out[k] = v
    return out or None


def redact_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    if headers is None:
        return None
    return {k: REDACTED if is_secret_header(k) else v for k, v in headers.items()}


def check_auth(value: object) -> tuple[str, str] | str | None:
    """``auth``: HTTP basic ``(user, password)``; ``"<redacted>"`` (loaded from a file) is
    kept and refused when a run starts."""
    if value is None or value == REDACTED:
        return value  # type: ignore[return-value]
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(x, str) for x in value)
    ):
        return (value[0], value[1])
    raise ConfigError("auth", REDACTED, "must be a (user, password) pair of str (basic auth)")


def redact_auth(value: tuple[str, str] | str | None) -> str | None:
    return None if value is None else REDACTED


#: Methods with which neither client sends a body meaningfully (httpx refuses a body with
#: GET/HEAD through its shortcuts; a server may drop it): a body with them is a ConfigError.
_NO_BODY = ("GET", "HEAD", "OPTIONS")


def check_body(prefix: str, method: str, json: object, data: object) -> None:
    """``json`` (any JSON value) or ``data`` (str, or a form: str -> str), not both, and not
    with a method that has no body."""
    if json is not None and data is not None:
        raise ConfigError(f"{prefix}json", "<json and data>", "give json or data, not both")
    if json is not None:
        try:
            _json.dumps(json, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{prefix}json", json, f"must be JSON-serialisable ({e})") from e
    if data is not None and not isinstance(data, str):
        if not isinstance(data, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise ConfigError(f"{prefix}data", data, "must be a str or a form {str: str}")
    if (json is not None or data is not None) and method in _NO_BODY:
        which = "json" if json is not None else "data"
        raise ConfigError(
            f"{prefix}{which}", json if json is not None else data,
            f"a body cannot be sent with {method}: set method='POST' (or PUT, PATCH, DELETE)",
        )  # fmt: skip


_ENDPOINT_KEYS = ("weight", "method", "headers", "json", "data")


def check_endpoint_options(
    path: str, options: Mapping[str, Any], *, methods: Sequence[str]
) -> dict[str, Any]:
    """One endpoint's overrides (``weight`` is taken out by the caller)."""
    unknown = sorted(set(options) - set(_ENDPOINT_KEYS))
    if unknown:
        raise ConfigError(
            f"endpoints[{path!r}].{unknown[0]}", options[unknown[0]],
            f"is not an endpoint option; valid: {', '.join(_ENDPOINT_KEYS)}",
        )  # fmt: skip
    out: dict[str, Any] = {}
    if options.get("method") is not None:
        m = options["method"]
        if not isinstance(m, str) or m.upper() not in methods:
            raise ConfigError(f"endpoints[{path!r}].method", m, f"must be one of {methods}")
        out["method"] = m.upper()
    headers = check_headers(f"endpoints[{path!r}].headers", options.get("headers"))
    if headers is not None:
        out["headers"] = headers
    for key in ("json", "data"):
        if options.get(key) is not None:
            out[key] = options[key]
    return out


def check_record_headers(value: object) -> tuple[str, ...]:
    """``record_headers``: extra response header names to record (beside the rate-limit
    ones), lower-cased."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("record_headers", value, "must be a list of header names (str)")
    return tuple(dict.fromkeys(v.lower() for v in value))


# --------------------------------------------------------------------- at run start


def check_sendable(exp: Any) -> None:
    """Refuse to run with a redacted secret or a request function that was not saved."""
    fix = "supply the secret again, e.g. exp.replace({}=...)"
    if exp.auth == REDACTED:
        raise ConfigError("auth", REDACTED, "was redacted when saved: " + fix.format("auth"))
    for where, headers in _all_headers(exp):
        for k, v in (headers or {}).items():
            if v == REDACTED:
                raise ConfigError(
                    f"{where}[{k!r}]", REDACTED, "was redacted when saved: " + fix.format(where)
                )
    if isinstance(exp.request, str):
        raise ConfigError(
            "request", exp.request,
            "was not re-importable when saved (a lambda, closure or __main__/notebook "
            "function): pass the function again, exp.replace(request=fn)",
        )  # fmt: skip


def _all_headers(exp: Any) -> list[tuple[str, Mapping[str, str] | None]]:
    out: list[tuple[str, Mapping[str, str] | None]] = [("headers", exp.headers)]
    for path, opts in exp.endpoint_options.items():
        out.append((f"endpoint_options[{path!r}].headers", opts.get("headers")))
    return out
