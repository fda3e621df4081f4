"""Small validation helpers: each names the parameter, the value and what is valid."""

from __future__ import annotations

import math
import numbers

from ratelab.errors import ConfigError


def positive_number(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (or >= 0)."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(name, value, f"must be a number {bound}")
    f = float(value)
    if math.isnan(f) or math.isinf(f) or f < 0 or (f == 0 and not allow_zero):
        raise ConfigError(name, value, f"must be a finite number {bound}")
    return f


def integer(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (and <= ``maximum``)."""
    valid = f"must be an integer >= {minimum}"
    if maximum is not None:
        valid = f"must be an integer in {minimum}..{maximum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(name, value, valid)
    if int(value) < minimum or (maximum is not None and int(value) > maximum):
        raise ConfigError(name, value, valid)
    return int(value)
