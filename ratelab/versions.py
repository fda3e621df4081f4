"""The versions a run records in its metadata (and names in its User-Agent)."""

from __future__ import annotations

import functools
import platform
from importlib.metadata import version

__all__ = ["versions"]


@functools.cache
def versions() -> dict[str, str]:
    """Python, platform, and the versions of ratelab and the libraries it measures with."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("ratelab", "aiohttp", "aiolimiter", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # pragma: no cover - an uninstalled checkout
            out[pkg] = "unknown"
    return out
