"""The server's log is found through the run: asked of a loopback target, never of another
host, and the asking is not itself logged."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest

import ratelab as rl
from ratelab.client import server_log
from ratelab.client.server_log import fetch_server_log


def test_a_url_target_gets_the_log_and_the_asking_is_not_logged(server: rl.LocalServer) -> None:
    before = len(server.log())
    result = rl.run(rl.Experiment(target=server.url, requests=7, workers=3), progress=False)
    log = result.server_log
    assert log is not None and len(log) == 7 and (log["run"] == result.meta["run"]).all()
    assert len(server.log()) == before + 7  # the log request left no row
    assert (log["arrival_s"] >= 0).all() and (log["arrival_s"] <= result.df.done_s.max()).all()


def test_a_target_that_is_not_a_local_server_gives_no_log() -> None:
    # a plain HTTP server on loopback: it answers the log route with 404
    cmd = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"]
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            port = int(line.split("port ")[1].split()[0])
            assert fetch_server_log(f"http://127.0.0.1:{port}", runs=["x"], t0=0.0) is None
        finally:
            proc.terminate()


def test_another_host_is_never_asked(monkeypatch) -> None:
    def no(*args: object, **kwargs: object) -> None:
        raise AssertionError("asked a host that is not this machine")

    monkeypatch.setattr(urllib.request, "urlopen", no)
    assert fetch_server_log("https://example.com", runs=["x"], t0=0.0) is None
    assert server_log.urllib.request.urlopen is no


@pytest.mark.parametrize("t0", [0.0, 1.5])
def test_the_log_route_shifts_times_to_the_run_clock(server: rl.LocalServer, t0: float) -> None:
    result = rl.run(rl.Experiment(target=server.url, requests=2, workers=1), progress=False)
    run, base = result.meta["run"], result.meta["t0_monotonic"]
    log = fetch_server_log(server.url, runs=[run], t0=base + t0)
    assert log is not None and len(log) == 2
    expected = server.log(t0=base + t0, run=run)["arrival_s"].to_numpy()
    assert log["arrival_s"].to_numpy() == pytest.approx(expected, abs=1e-12)
    assert time.monotonic() > base  # same clock: the server stamps with time.monotonic()
