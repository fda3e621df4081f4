"""Seeded random durations: server latency models and client think time.

Every distribution draws from a ``numpy.random.Generator`` that the caller owns, so a run
with a seed is reproducible. ``repr`` reads like the code that builds the object.

    >>> rl.Uniform(0.05, 0.2).sample(np.random.default_rng(1), 3)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ratelab._renamed import plain_data, renamed
from ratelab._validate import positive_number
from ratelab.errors import ConfigError

__all__ = [
    "Distribution",
    "Exponential",
    "Fixed",
    "LogNormal",
    "Uniform",
    "parse_distribution",
    "upper_bound",
]


class Distribution:
    """A random duration in seconds.

    A subclass provides ``sample(rng, n)`` and ``mean_s``, the expected value in seconds
    (a property, or a field as in :class:`Exponential`). Duration parameters are named
    with their unit, ``_s``; the old keywords ``Fixed(s=)``, ``Exponential(mean=)`` and
    ``LogNormal(median=)`` still work, with a DeprecationWarning, and plain data with the
    old keys loads as before.
    """

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` durations (seconds, float64, never negative)."""
        raise NotImplementedError

    # mean_s (the expected value in seconds) is not defined here: a property on this base
    # class would shadow Exponential's field of that name.

    def to_dict(self) -> dict[str, object]:
        """Plain data; :func:`as_distribution` reads it back."""
        return {"type": type(self).__name__, **dataclasses.asdict(self)}  # type: ignore[call-overload]


@renamed(s="value_s")
@dataclass(frozen=True, repr=False)
class Fixed(Distribution):
    """Always ``value_s`` seconds: ``rl.Fixed(0.1)``."""

    value_s: float

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "value_s", positive_number("Fixed(value_s)", self.value_s, allow_zero=True)
        )

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value_s)

    @property
    def mean_s(self) -> float:
        return self.value_s

    def __repr__(self) -> str:
        return f"Fixed({self.value_s:g})"


@dataclass(frozen=True, repr=False)
class Uniform(Distribution):
    """Uniform between ``low_s`` and ``high_s`` seconds: ``rl.Uniform(0.05, 0.2)``."""

    low_s: float
    high_s: float

    def __post_init__(self) -> None:
        low = positive_number("Uniform(low_s)", self.low_s, allow_zero=True)
        high = positive_number("Uniform(high_s)", self.high_s, allow_zero=True)
        if high < low:
            raise ConfigError("Uniform(high_s)", self.high_s, f"must be >= low_s={low:g}")
        object.__setattr__(self, "low_s", low)
        object.__setattr__(self, "high_s", high)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low_s, self.high_s, n)

    @property
    def mean_s(self) -> float:
        return (self.low_s + self.high_s) / 2

    def __repr__(self) -> str:
        return f"Uniform({self.low_s:g}, {self.high_s:g})"


@renamed(mean="mean_s")
@dataclass(frozen=True, repr=False)
class Exponential(Distribution):
    """Exponential with mean ``mean_s`` seconds: ``rl.Exponential(0.1)``."""

    mean_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean_s", positive_number("Exponential(mean_s)", self.mean_s))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean_s, n)

    def __repr__(self) -> str:
        return f"Exponential({self.mean_s:g})"


@renamed(median="median_s")
@dataclass(frozen=True, repr=False)
class LogNormal(Distribution):
    """Log-normal with median ``median_s`` seconds and shape ``sigma`` (unitless: the
    standard deviation of the duration's natural log): ``rl.LogNormal(0.1, 0.5)``."""

    median_s: float
    sigma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "median_s", positive_number("LogNormal(median_s)", self.median_s))
        object.__setattr__(
            self, "sigma", positive_number("LogNormal(sigma)", self.sigma, allow_zero=True)
        )

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.lognormal(math.log(self.median_s), self.sigma, n)

    @property
    def mean_s(self) -> float:
        return self.median_s * math.exp(self.sigma**2 / 2)

    def __repr__(self) -> str:
        return f"LogNormal({self.median_s:g}, {self.sigma:g})"


def upper_bound(distribution: Distribution) -> float:
    """The largest value ``distribution`` can draw: ``inf`` for Exponential, a LogNormal
    with ``sigma > 0`` and any distribution ratelab does not know (its bound is unknown)."""
    if isinstance(distribution, Fixed):
        return distribution.value_s
    if isinstance(distribution, Uniform):
        return distribution.high_s
    if isinstance(distribution, LogNormal) and distribution.sigma == 0:
        return distribution.median_s
    return math.inf


_KINDS = {"fixed": Fixed, "uniform": Uniform, "exponential": Exponential, "lognormal": LogNormal}


def parse_distribution(text: str, *, parameter: str = "latency") -> Distribution:
    """Parse the command-line form ``kind:a[,b]``: ``fixed:0.1``, ``uniform:0.05,0.2``,
    ``exponential:0.1``, ``lognormal:0.1,0.5``. A bare number means ``fixed``."""
    kind, _, args = text.strip().partition(":")
    if not args:
        try:
            return Fixed(float(kind))
        except ValueError:
            pass
    cls = _KINDS.get(kind.lower())
    if cls is None:
        raise ConfigError(
            parameter, text, f"must be one of {', '.join(k + ':...' for k in _KINDS)} or a number"
        )
    try:
        values = [float(v) for v in args.split(",")] if args else []
        return cls(*values)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(parameter, text, f"{kind} takes numbers, e.g. uniform:0.05,0.2") from e


def as_distribution(parameter: str, value: object) -> Distribution | None:
    """Accept a Distribution, a number (fixed seconds), None or a ``kind:args`` string."""
    if value is None or isinstance(value, Distribution):
        return value
    if isinstance(value, str):
        return parse_distribution(value, parameter=parameter)
    if isinstance(value, Mapping):
        data = dict(value)
        cls = _KINDS.get(str(data.pop("type", "")).lower())
        if cls is None:
            raise ConfigError(
                f"{parameter}.type", value.get("type"), f"must be one of {list(_KINDS)}"
            )
        data = plain_data(cls, data, parameter)  # old parameter names, silently
        try:
            return cls(**data)
        except TypeError as e:
            takes = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(parameter, value, f"{cls.__name__} takes {takes}") from e
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Fixed(positive_number(parameter, value, allow_zero=True))
    raise ConfigError(
        parameter, value, "must be a distribution such as rl.Uniform(0.05, 0.2), a number or None"
    )
