"""Figures from the command line: drawn off-screen (:func:`use_agg`), written to a file
(:func:`save_figure`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DPI", "save_figure", "use_agg"]

DPI = 100


def save_figure(fig: Any, out: Path) -> Path:
    """Write ``fig`` to ``out`` (parent directories are created), close it, return ``out``."""
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=DPI)
    finally:
        plt.close(fig)
    return out


def use_agg() -> None:
    """Draw off-screen (a CLI process has no window to show)."""
    import matplotlib

    matplotlib.use("Agg")
