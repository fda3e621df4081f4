"""``ratelab run ... --live``: one line rewritten in place in a terminal, the progress bar
where output is not one."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ratelab.analysis.result import load
from ratelab.cli.main import main
from tests.cli.test_cli import TINY, write


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_run_live_in_a_terminal_shows_the_headline_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    monkeypatch.setenv("COLUMNS", "200")
    toml = write(tmp_path / "tiny.toml", TINY)
    out = tmp_path / "tiny.parquet"
    assert main(["run", str(toml), "--out", str(out), "--live"]) == 0
    text = tty.getvalue()
    assert "\r\x1b[K" in text and text.endswith("\n")
    last = text.split("\r\x1b[K")[-1]
    assert "12/12 done" in last and "200:12" in last and "RateLimit(400) level" in last
    assert len(load(out).state) > 0  # the state was sampled and saved


def test_run_live_where_output_is_not_a_terminal_shows_the_progress_bar(tmp_path: Path) -> None:
    # the command in a process of its own, its standard error a pipe, tqdm enabled
    # (TQDM_DISABLE, which CI sets and tqdm reads once at import, left out)
    toml = write(tmp_path / "tiny.toml", TINY)
    out = tmp_path / "tiny.parquet"
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    proc = subprocess.run(
        [sys.executable, "-m", "ratelab.cli", "run", str(toml), "--out", str(out), "--live"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr and "12/12" in proc.stderr  # tqdm's bar, no codes
    assert len(load(out).df) == 12


def test_run_live_simulated_in_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    monkeypatch.setenv("COLUMNS", "200")
    toml = write(tmp_path / "tiny.toml", TINY)
    out = tmp_path / "tiny.parquet"
    assert main(["run", str(toml), "--out", str(out), "--live", "--simulate"]) == 0
    assert "12/12 done" in tty.getvalue().split("\r\x1b[K")[-1]
