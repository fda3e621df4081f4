"""``ratelab run ... --live``: one line rewritten in place in a terminal, the progress bar
where output is not one."""

from __future__ import annotations

import io
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


def test_run_live_where_output_is_not_a_terminal_shows_the_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = write(tmp_path / "tiny.toml", TINY)
    out = tmp_path / "tiny.parquet"
    assert main(["run", str(toml), "--out", str(out), "--live"]) == 0
    err = capsys.readouterr().err
    assert "\x1b[" not in err and "12/12" in err  # tqdm's bar, no control codes


def test_run_live_simulated_in_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    monkeypatch.setenv("COLUMNS", "200")
    toml = write(tmp_path / "tiny.toml", TINY)
    out = tmp_path / "tiny.parquet"
    assert main(["run", str(toml), "--out", str(out), "--live", "--simulate"]) == 0
    assert "12/12 done" in tty.getvalue().split("\r\x1b[K")[-1]
