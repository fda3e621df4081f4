"""Renamed parameters: the old keyword keeps working in code, with a DeprecationWarning
that names the new one; plain data (saved results, TOML files) with the old key loads
silently, since a file is not the user's code.

    @renamed(per_s="period_s")
    @dataclass(frozen=True)
    class RateLimit(Strategy):
        max_rate: float
        period_s: float = 1.0

    RateLimit(20, per_s=0.5)   # DeprecationWarning: RateLimit(per_s=...) is deprecated: ...
    RateLimit(20).per_s        # DeprecationWarning: RateLimit.per_s is deprecated: ...
    plain_data(RateLimit, {"max_rate": 20, "per_s": 0.5}, "strategy")   # period_s, silently

``dataclasses.fields``, ``repr``, ``to_dict`` and ``inspect.signature`` show only the new
names; the generated ``__init__`` (so validation, ``dataclasses.replace``) is unchanged.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ratelab.errors import ConfigError

__all__ = ["plain_data", "renamed", "renamed_parameters"]

T = TypeVar("T", bound=type)


def renamed_parameters(cls: type) -> dict[str, str]:
    """``{old: new}`` for every parameter of ``cls`` renamed with :func:`renamed`."""
    return dict(getattr(cls, "_renamed_parameters", {}))


def _both(cls: type, old: str, new: str, value: object) -> ConfigError:
    name = cls.__name__
    return ConfigError(
        f"{name}({old})", value, f"is the old name of {new}, which is given too: give only {new}"
    )


def renamed(**old_to_new: str) -> Callable[[T], T]:
    """Class decorator, applied above ``@dataclass``: accept each old keyword (warning and
    passing it on as the new one) and keep each old attribute readable (warning)."""

    def decorate(cls: T) -> T:
        init = cls.__init__
        positional = [
            p.name
            for p in list(inspect.signature(init).parameters.values())[1:]  # not self
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if not old_to_new.keys() & kwargs.keys():
                init(self, *args, **kwargs)
                return
            given = set(positional[: len(args)]) | kwargs.keys()
            name = type(self).__name__
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in given:
                    raise _both(type(self), old, new, kwargs[old])
                warnings.warn(
                    f"{name}({old}=...) is deprecated: use {name}({new}=...), same meaning",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            init(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[misc]
        cls._renamed_parameters = {**renamed_parameters(cls), **old_to_new}  # type: ignore[attr-defined]
        for old, new in old_to_new.items():
            setattr(cls, old, _old_attribute(old, new))
        return cls

    return decorate


def _old_attribute(old: str, new: str) -> property:
    def get(self: object) -> Any:
        name = type(self).__name__
        warnings.warn(
            f"{name}.{old} is deprecated: use {name}.{new}, same value",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(self, new)

    return property(get, doc=f"Deprecated: the old name of ``{new}``.")


def plain_data(cls: type, data: Mapping[str, Any], parameter: str) -> dict[str, Any]:
    """``data`` (keyword arguments of ``cls`` read from a file) with every old key renamed to
    the new one, silently. Both given: a ConfigError naming ``parameter``."""
    out = dict(data)
    for old, new in renamed_parameters(cls).items():
        if old in out:
            if new in out:
                raise ConfigError(
                    f"{parameter}.{old}", out[old], f"is the old name of {new}: give only {new}"
                )
            out[new] = out.pop(old)
    return out
