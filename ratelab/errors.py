"""The exceptions ratelab raises on purpose."""

from __future__ import annotations

__all__ = ["ConfigError", "RatelabError", "RatelabWarning", "ResultFileError", "RunError"]


class RatelabError(Exception):
    """Base class of every error ratelab raises on purpose."""


class RatelabWarning(UserWarning):
    """Something works as asked but deserves a word, e.g. a LocalServer that listens beyond
    this machine."""


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


class RunError(RatelabError):
    """A run ended early because a part of it raised where a failure cannot be a row: a
    guard's ``release``/``observe``/``aclose``, a strategy's ``guard()``, the transport's
    ``open``/``aclose``, the progress callback, or the engine's own bookkeeping.

    ``where`` names that part (e.g. ``"guard RateLimit(20).observe"``); the original
    exception is ``__cause__``; ``result`` is the :class:`~ratelab.Result` with every row
    recorded until then (unfinished requests marked ``CancelledError``), or None when the
    run failed before it began.
    """

    def __init__(self, where: str, exc: BaseException) -> None:
        self.where = where
        self.result: object = None
        self.records: object = None  # (store, meta) from the engine, until the runner
        # turns them into ``result``
        super().__init__(f"the run stopped: {where} raised {type(exc).__name__}: {exc}")
