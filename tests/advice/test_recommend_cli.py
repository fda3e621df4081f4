"""``ratelab recommend``: the table, the why, the snippet; a real run against 127.0.0.1."""

from __future__ import annotations

import ast
import re

import pytest

import ratelab as rl
from ratelab.cli.main import main


def test_simulate_prints_the_table_and_a_snippet_that_parses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["recommend", "--server", "http://127.0.0.1:9", "--rate-limit", "30/2s",
            "--workers", "8", "--library", "httpx", "--simulate"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["shape", "strategy"]
    assert "burst-free token bucket" in out and "The limit is 15 requests/s" in out
    snippet = out.split("# httpx:\n", 1)[1].split("\nsimulated (", 1)[0]
    ast.parse(snippet)
    assert "import httpx" in snippet and "nothing was sent" in out


def test_a_profile_is_read_from_its_spec(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["recommend", "--server", "http://127.0.0.1:9", "--profile",
            "openai:rpm=600,tpm=30000", "--cost", "100", "--requests", "50", "--simulate",
            "--library", "aiometer"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "The limit is 5 requests/s (tokens" in out and "max_per_second=" in out


def test_without_simulate_it_runs_for_real_and_gets_no_429(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with rl.LocalServer(rate_limit="30/2s", latency=0.01) as server:
        argv = ["recommend", "--server", server.url, "--rate-limit", "30/2s",
                "--requests", "60", "--workers", "4", "--no-progress"]  # fmt: skip
        assert main(argv) == 0
    out = capsys.readouterr().out
    m = re.search(r"run for real: 60 attempts, (\d+) refused \(429\), ([\d.]+)/s", out)
    assert m is not None, out
    assert int(m.group(1)) == 0 and float(m.group(2)) >= 0.95 * 15


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--rate-limit", "30/2s", "--profile", "github"], "not both"),
     (["--profile", "acme:rpm=3"], "openai, anthropic or github"),
     (["--profile", "openai:rpm"], "name=value"),
     (["--rate-limit", "thirty"], "--rate-limit")],
)  # fmt: skip
def test_bad_server_options_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["recommend", "--server", "http://127.0.0.1:9", "--simulate", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_without_a_limit_it_probes_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    with rl.LocalServer(rate_limit="30/2s", headers=None) as server:
        argv = ["recommend", "--server", server.url, "--workers", "8", "--simulate"]
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "requests: 30 requests per 2" in out and "fixed_window" in out
