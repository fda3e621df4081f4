"""``ratelab probe URL``: the findings as a table, bad input as exit status 2."""

from __future__ import annotations

import pytest

import ratelab as rl
from ratelab.cli.main import main


def test_probe_prints_the_findings(capsys: pytest.CaptureFixture[str]) -> None:
    with rl.LocalServer(rate_limit=rl.ServerRateLimit(10, 1.0), headers=None) as srv:
        assert main(["probe", srv.url + "/get"]) == 0
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:7]}
    assert table["limit"] == ["10", "measured"]
    assert table["algorithm"] == ["fixed_window", "measured"]
    assert "as a server model: ServerRateLimit(10, " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probe", "http://127.0.0.1:1/get", "--budget", "0"], "budget=0"),
        (["probe", "not a url"], "target="),
        (["probe", "http://192.0.2.1/get", "--budget", "500"], "polite=False"),
    ],
)
def test_probe_bad_input_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
