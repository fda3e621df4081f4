"""The ``loop`` option's names (``Experiment(loop=...)``); the loops themselves are built by
:mod:`ratelab.client.loops` when a run starts."""

from __future__ import annotations

from ratelab.errors import ConfigError

__all__ = ["LOOPS", "check_loop"]

#: The loops a run can use.
LOOPS = ("asyncio", "uvloop")


def check_loop(value: object) -> str:
    """Validate a ``loop`` option (the name only: whether uvloop is installed is checked
    when a run starts, so a saved uvloop Result loads anywhere)."""
    if value not in LOOPS:
        raise ConfigError("loop", value, f"must be one of {', '.join(map(repr, LOOPS))}")
    return str(value)
