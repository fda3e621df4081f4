"""What a ``ratelab`` command ends with: its exit statuses, and the error for bad input."""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "UsageError"]

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran but something outside ratelab failed (e.g. a busy port)
EXIT_USAGE = 2  # bad arguments, files or configuration values
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command's input, reported as ``error: ...`` with status 2."""
