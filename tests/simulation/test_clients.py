"""rl.simulate(clients=N), a simulated SharedRateLimit, the simulated host's timings and the
command line's --simulate. Exact: a virtual clock and fixed seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ratelab as rl
from ratelab.analysis.result import load
from ratelab.cli.main import main
from ratelab.client.processes import split_evenly
from ratelab.simulation.shared import MovingWindowStore

URL = "http://127.0.0.1:8080"  # never contacted
SERVER = rl.LocalServer(latency=rl.Uniform(0.05, 0.2), seed=1)


def _exp(**kwargs: Any) -> rl.Experiment:
    kwargs.setdefault("requests", 400)
    kwargs.setdefault("workers", 40)
    kwargs.setdefault("seed", 1)
    return rl.Experiment(target=URL, **kwargs)


def _sent_per_s(res: rl.Result, start_s: float, end_s: float) -> float:
    sent = res.df.sent_s.to_numpy()
    return float(((sent >= start_s) & (sent < end_s)).sum() / (end_s - start_s))


def test_four_clients_each_with_its_own_rate_limit_send_four_times_the_rate() -> None:
    res = rl.simulate(_exp(strategy=rl.RateLimit(20)), SERVER, clients=4, progress=False)
    df = res.df
    assert df.groupby("process").size().tolist() == split_evenly(400, 4) == [100] * 4
    assert sorted(df.request_id) == list(range(400))  # global ids, as processes=4 gives
    assert res.meta["clients"] == 4 and res.meta["processes"] == 4
    assert res.meta["clock"] == "virtual"
    # the server saw every client's requests, joinable on request_id + attempt
    log = res.server_log
    assert log is not None and log.groupby("process").size().tolist() == [100] * 4
    joined = df.merge(log, on=["request_id", "attempt"], suffixes=("", "_srv"))
    assert len(joined) == 400 and (joined.process == joined.process_srv).all()
    # steady state (after aiolimiter's first-second burst): 4 x 20 = 80/s, not 20/s
    assert 76 <= _sent_per_s(res, 2.0, 4.0) <= 84


def test_shared_rate_limit_keeps_the_clients_at_the_limit_together() -> None:
    exp = _exp(strategy=rl.SharedRateLimit(20))
    res = rl.simulate(exp, SERVER, clients=4, progress=False)
    assert (res.df.status == 200).all()
    # never more than 20 acquisitions in any 1 s (the moving window, across the clients)
    admitted = np.sort(res.df.admitted_s.to_numpy())
    assert (admitted[20:] - admitted[:-20] > 1.0 - 1e-9).all()
    assert 19 <= _sent_per_s(res, 2.0, 12.0) <= 20.5
    again = rl.simulate(exp, SERVER, clients=4, progress=False)
    pd.testing.assert_frame_equal(res.df, again.df)  # exact, jitter included
    # the same limit in one client: also 20/s
    one = rl.simulate(exp.replace(requests=100), SERVER, progress=False)
    assert rl.summary(one).iloc[0]["max_sent_1s"] == 20


def test_moving_window_store_has_limits_semantics() -> None:
    store = MovingWindowStore(2, 1.0)
    assert store.hit(0.0) and store.hit(0.5)
    assert not store.hit(1.0)  # 0.0 is still in [0.0, 1.0]
    assert store.window(1.0) == (1.0, 0)  # the oldest (0.0) leaves at 1.0
    assert store.hit(1.01)  # 0.0 has left
    assert store.window(1.2) == (1.5, 0)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [({"clients": 0}, "clients"), ({"clients": 50}, "clients"), ({"cpu_s": -1.0}, "cpu_s"),
     ({"connect_s": float("nan")}, "connect_s")],
)  # fmt: skip
def test_bad_options_are_refused(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(rl.ConfigError) as info:
        rl.simulate(_exp(workers=40), SERVER, progress=False, **kwargs)
    assert info.value.parameter == parameter


def test_shared_limit_algorithms_other_than_moving_window_are_refused() -> None:
    exp = _exp(strategy=rl.SharedRateLimit(5, algorithm="fixed_window"))
    with pytest.raises(rl.ConfigError, match="moving_window"):
        rl.simulate(exp, SERVER, progress=False)


def _ideal(**kw: float) -> dict[str, float]:
    return {"rtt_s": 0.0, "cpu_s": 0.0, "late_s": 0.0, "connect_s": 0.0, **kw}


def test_host_cpu_queues_a_burst_and_a_fresh_connection_costs_more() -> None:
    server = rl.LocalServer(latency=rl.Fixed(0.1))
    exp = _exp(requests=10, workers=5)
    res = rl.simulate(exp, server, progress=False, **_ideal(cpu_s=0.001, connect_s=0.002))
    lat = (res.df.done_s - res.df.sent_s).to_numpy()
    # first round: 5 requests at once, each opening a connection (3 ms of CPU), one at a time
    assert lat[:5] == pytest.approx([0.1 + 0.003 * k for k in range(1, 6)], abs=1e-9)
    # second round: the connections are reused (1 ms each); they come back 3 ms apart, so
    # none waits for the CPU
    assert lat[5:] == pytest.approx([0.101] * 5, abs=1e-9)
    late = rl.simulate(exp, server, progress=False, **_ideal(late_s=0.0009))
    log = late.server_log
    assert (log.departure_s - log.arrival_s).to_numpy() == pytest.approx([0.1009] * 10)


def test_an_idle_connection_older_than_keepalive_is_not_reused() -> None:
    exp = _exp(requests=3, workers=1, arrivals=rl.Constant(1 / 20))  # one every 20 s
    fast = rl.simulate(exp.replace(arrivals=rl.Constant(1.0)), progress=False,
                       **_ideal(connect_s=0.01))  # fmt: skip
    slow = rl.simulate(exp, progress=False, **_ideal(connect_s=0.01))
    lat_fast = (fast.df.done_s - fast.df.sent_s).to_numpy()
    lat_slow = (slow.df.done_s - slow.df.sent_s).to_numpy()
    assert lat_fast == pytest.approx([0.01, 0.0, 0.0], abs=1e-9)  # reused
    assert lat_slow == pytest.approx([0.01, 0.01, 0.01], abs=1e-9)  # 20 s idle > 15 s


TOML = """\
name = "sim"
requests = 40
workers = 4
strategy = [{type = "RateLimit", max_rate = 10}]
seed = 1

[server]
latency = "fixed:0.1"
port = 9
"""


def test_cli_run_simulate_does_not_start_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr(rl.LocalServer, "start", lambda self: started.append(self))
    toml = tmp_path / "sim.toml"
    toml.write_text(TOML)
    out = tmp_path / "sim.parquet"
    assert main(["run", str(toml), "--simulate", "--no-progress", "--out", str(out)]) == 0
    assert started == []
    res = load(out)
    assert res.meta["clock"] == "virtual" and len(res.df) == 40
    assert (res.server_log.departure_s - res.server_log.arrival_s).min() >= 0.1
    assert "simulated" in capsys.readouterr().out


def test_cli_sweep_simulate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = TOML.replace("[server]", "[grid]\nworkers = [1, 4]\n\n[server]")
    text = "[experiment]\n" + text
    toml = tmp_path / "sweep.toml"
    toml.write_text(text)
    csv = tmp_path / "s.csv"
    assert main(["sweep", str(toml), "--simulate", "--no-progress", "-o", str(csv)]) == 0
    summary = pd.read_csv(csv)
    # one worker: 40 requests x (0.1 s + the host) > 4 s; four workers: the 10/s limit
    assert summary["duration_s"].iloc[0] > 4.0
    assert 3.0 < summary["duration_s"].iloc[1] < 4.0
    assert "simulated" in capsys.readouterr().out


@pytest.mark.parametrize("clients", [2, 4])
def test_shared_rate_limit_never_reuses_a_slot_sooner_than_its_margin(clients: int) -> None:
    """Issue 17: 4 clients x 4 tasks at 50/s reused slots 10-20 ms after they freed (a
    client that found a slot "free" after another took the oldest retried at once). The
    moving window with its margin: hit k + R comes >= period_s + margin_s after hit k."""
    rate, margin = 50, 0.02
    exp = _exp(strategy=rl.SharedRateLimit(rate, margin_s=margin), requests=600, workers=16)
    res = rl.simulate(exp, SERVER, clients=clients, progress=False)
    assert (res.df.status == 200).all()
    admitted = np.sort(res.df.admitted_s.to_numpy())
    gaps = admitted[rate:] - admitted[:-rate] - 1.0  # how long after its slot freed
    assert gaps.min() >= margin - 1e-9, np.sort(gaps)[:5]
    assert len(gaps) == 550 and (gaps < margin + 0.005).mean() > 0.5  # saturated: the bound is met
