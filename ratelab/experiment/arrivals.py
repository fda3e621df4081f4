"""Open-loop arrival processes: when each request is meant to go (``Experiment(arrivals=...)``).

rl.Constant(20)   # one request every 50 ms
rl.Poisson(20)    # exponential gaps, mean 50 ms
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ratelab._validate import positive_number

__all__ = ["ARRIVALS", "Arrivals", "Constant", "Poisson"]


class Arrivals:
    """An open-loop arrival process: when each request is meant to go."""

    rate_per_s: float

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Intended arrival times (seconds from the run's start) of ``n`` requests."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, object]:
        return {"type": type(self).__name__, "rate_per_s": self.rate_per_s}


@dataclass(frozen=True, repr=False)
class Constant(Arrivals):
    """One request every ``1 / rate_per_s`` seconds, the first at t=0."""

    rate_per_s: float

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "rate_per_s", positive_number("Constant(rate_per_s)", self.rate_per_s)
        )

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.arange(n) / self.rate_per_s

    def __repr__(self) -> str:
        return f"Constant({self.rate_per_s:g})"


@dataclass(frozen=True, repr=False)
class Poisson(Arrivals):
    """A Poisson process: exponential gaps with mean ``1 / rate_per_s``, the first at t=0."""

    rate_per_s: float

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "rate_per_s", positive_number("Poisson(rate_per_s)", self.rate_per_s)
        )

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0)
        gaps = rng.exponential(1 / self.rate_per_s, n)
        gaps[0] = 0.0
        return np.cumsum(gaps)

    def __repr__(self) -> str:
        return f"Poisson({self.rate_per_s:g})"


#: Every arrival process, by name (the ``type`` of its plain-data form).
ARRIVALS: dict[str, type[Arrivals]] = {"Constant": Constant, "Poisson": Poisson}
