"""The exceptions ratelab raises on purpose."""

from __future__ import annotations

__all__ = ["ConfigError", "RatelabError", "ResultFileError"]


class RatelabError(Exception):
    """Base class of every error ratelab raises on purpose."""


class ConfigError(RatelabError, ValueError):
    """A configuration value is invalid.

    The message names the parameter, the value given and what would be valid, e.g.
    ``workers=0 is invalid: must be an integer >= 1``.
    """

    def __init__(self, parameter: str, value: object, valid: str, hint: str = "") -> None:
        self.parameter = parameter
        self.value = value
        self.valid = valid
        message = f"{parameter}={value!r} is invalid: {valid}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


class ResultFileError(RatelabError, ValueError):
    """A file could not be read as a ratelab result."""
