"""rl.simulate: the real engine and guards on a virtual clock against a simulated server.
Exact times: what the strategy, the server's policies and the round trip give."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ratelab as rl
from ratelab.server.log import LOG_COLUMNS
from ratelab.simulation.server import DEFAULT_RTT_S

URL = "http://127.0.0.1:8080"  # never contacted
NS = 1e-9


def _exp(**kwargs: Any) -> rl.Experiment:
    kwargs.setdefault("requests", 10)
    kwargs.setdefault("workers", 10)
    kwargs.setdefault("seed", 1)
    return rl.Experiment(target=URL, **kwargs)


def _sim(exp: rl.Experiment, server: rl.LocalServer | None = None, **kw: Any) -> rl.Result:
    for name in ("cpu_s", "late_s", "connect_s"):  # an ideal host: exact times
        kw.setdefault(name, 0.0)
    return rl.simulate(exp, server, progress=False, **kw)


def test_same_columns_and_dtypes_as_a_real_run_and_a_server_log() -> None:
    with rl.LocalServer() as server:
        real = rl.run(rl.Experiment(target=server.url, requests=5, workers=2), progress=False)
    sim = _sim(_exp(requests=5, workers=2))
    assert list(sim.df.columns) == list(real.df.columns)
    assert sim.df.dtypes.to_dict() == real.df.dtypes.to_dict()
    assert real.server_log is not None and sim.server_log is not None
    assert list(sim.server_log.columns) == list(LOG_COLUMNS)
    names = [d.name for d in sim.server_log.dtypes]  # "category": the run tokens differ
    assert names == [d.name for d in real.server_log.dtypes]
    assert sim.meta["clock"] == "virtual" and real.meta["clock"] == "real"
    assert len(sim.server_log) == 5 and (sim.server_log.decision == "ok").all()
    assert rl.summary(sim).iloc[0]["ok"] == 5


def test_rtt_is_part_of_the_latency_and_the_server_sees_the_middle_of_it() -> None:
    res = _sim(_exp(requests=4, workers=1), rl.LocalServer(latency=rl.Fixed(0.1)), rtt_s=0.002)
    df, log = res.df, res.server_log
    assert (df.done_s - df.sent_s).to_numpy() == pytest.approx([0.102] * 4, abs=NS)
    assert (log.arrival_s - df.sent_s).to_numpy() == pytest.approx([0.001] * 4, abs=NS)
    assert (log.departure_s - log.arrival_s).to_numpy() == pytest.approx([0.1] * 4, abs=NS)
    assert (df.headers_s == df.done_s).all()
    assert _sim(_exp(requests=1)).df.done_s[0] == pytest.approx(DEFAULT_RTT_S, abs=NS)


def test_server_fixed_window_gives_exactly_limit_ok_per_window_and_the_retry_after() -> None:
    server = rl.LocalServer(rate_limit=rl.ServerRateLimit(10, 1.0))
    exp = _exp(requests=35, workers=1, arrivals=rl.Constant(20.0))  # 20/s against 10/s
    res = _sim(exp, server, rtt_s=0.0)
    log = res.server_log
    window = np.floor(log.arrival_s.to_numpy() + 1e-9).astype(int)
    ok = (log.status == 200).to_numpy()
    assert [int(ok[window == w].sum()) for w in range(2)] == [10, 10]
    assert ((log.status == 429) == (log.decision == "rate_limited")).all()
    assert res.df.status.value_counts().to_dict() == {200: 20, 429: 15}
    # the first 429 (request 10, at 0.5 s) is 0.5 s before its window closes: Retry-After 1
    retry = _sim(exp.replace(strategy=rl.Retry(2, jitter=None)), server, rtt_s=0.0)
    second = retry.df[retry.df.attempt == 2].sort_values("request_id")
    first = retry.df[(retry.df.attempt == 1) & (retry.df.status == 429)].sort_values("request_id")
    assert len(second) == len(first) > 0
    waited = second.ready_s.to_numpy() - first.done_s.to_numpy()
    assert waited == pytest.approx([1.0] * len(first), abs=NS)


def test_connection_limit_pool_waits_exactly() -> None:
    server = rl.LocalServer(latency=rl.Fixed(0.1))
    df = _sim(_exp(requests=6, workers=6, strategy=rl.ConnectionLimit(2)), server, rtt_s=0.0).df
    waited = df.pool_queued_s.notna()
    assert waited.tolist() == [False, False, True, True, True, True]
    assert df.pool_queued_s[waited].to_numpy() == pytest.approx([0] * 4, abs=NS)
    assert df.pool_acquired_s[waited].to_numpy() == pytest.approx([0.1, 0.1, 0.2, 0.2], abs=NS)
    assert (df.sent_s[waited] == df.pool_acquired_s[waited]).all()
    assert df.done_s.to_numpy() == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.3], abs=NS)


def test_client_rate_limit_is_the_real_aiolimiter_schedule() -> None:
    df = _sim(_exp(requests=30, workers=30, strategy=rl.RateLimit(10)), rtt_s=0.0).df
    expected = [0.0] * 10 + [0.1 * k for k in range(1, 21)]
    assert np.sort(df.admitted_s.to_numpy()) == pytest.approx(expected, abs=NS)


def test_max_concurrency_answers_overload_at_once() -> None:
    server = rl.LocalServer(latency=rl.Fixed(0.5), max_concurrency=3)
    res = _sim(_exp(requests=5, workers=5), server, rtt_s=0.0)
    assert res.df.status.value_counts().to_dict() == {200: 3, 503: 2}
    over = res.df[res.df.status == 503]
    assert (over.done_s - over.sent_s).to_numpy() == pytest.approx([0, 0], abs=NS)
    assert set(res.server_log.decision) == {"ok", "overloaded"}


def test_faults_and_timeouts_are_rows() -> None:
    server = rl.LocalServer(latency=rl.Fixed(0.01), faults=rl.Faults(stall_rate=1.0))
    res = _sim(_exp(requests=3, timeout_s=2.0), server, rtt_s=0.0)
    assert (res.df.error == "TimeoutError").all()
    assert (res.df.done_s - res.df.admitted_s).to_numpy() == pytest.approx([2.0] * 3, abs=NS)
    assert (res.server_log.status == 499).all()
    reset = rl.LocalServer(faults=rl.Faults(reset_rate=1.0))
    assert (_sim(_exp(requests=3), reset).df.error == "ServerDisconnectedError").all()
    err = rl.LocalServer(faults=rl.Faults(error_rate=1.0, status=502))
    assert (_sim(_exp(requests=3), err).df.status == 502).all()


def test_routes_answer_as_the_local_server() -> None:
    exp = _exp(requests=20, endpoints={"/status/418": 1, "/bytes/64": 1, "/nope": 1})
    df = _sim(exp).df
    by_path = df.groupby("endpoint", observed=True).status.first().to_dict()
    assert by_path == {"/status/418": 418, "/bytes/64": 200, "/nope": 404}
    assert (df.bytes[df.endpoint == "/bytes/64"] == 64).all()


def test_save_and_load_round_trip(tmp_path: Any) -> None:
    res = _sim(_exp(), rl.LocalServer(latency=rl.Uniform(0.01, 0.02), seed=3))
    back = rl.load(res.save(tmp_path / "sim.parquet"))
    pd.testing.assert_frame_equal(back.df, res.df)
    pd.testing.assert_frame_equal(back.server_log, res.server_log)
    assert back.meta["clock"] == "virtual"


_DETERMINISM = """
import sys, ratelab as rl
exp = rl.Experiment(target="http://127.0.0.1:8080", requests=400, workers=20, seed=7,
                    strategy=rl.RateLimit(50) + rl.ConnectionLimit(5) + rl.Retry(3))
server = rl.LocalServer(latency=rl.LogNormal(0.02, 0.5), seed=2,
                        rate_limit=rl.ServerRateLimit(30, 1.0, algorithm="gcra"),
                        faults=rl.Faults(error_rate=0.05))
rl.simulate(exp, server, progress=False).save(sys.argv[1])
"""


def test_deterministic_even_under_cpu_load(tmp_path: Any) -> None:
    burn = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        subprocess.run([sys.executable, "-c", _DETERMINISM, str(tmp_path / "a.parquet")],
                       check=True, timeout=120)  # fmt: skip
    finally:
        burn.kill()
        burn.wait()
    subprocess.run([sys.executable, "-c", _DETERMINISM, str(tmp_path / "b.parquet")],
                   check=True, timeout=120)  # fmt: skip
    a, b = rl.load(tmp_path / "a.parquet"), rl.load(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(a.df, b.df)
    pd.testing.assert_frame_equal(a.server_log, b.server_log)
    assert (a.df.status == 429).any() and (a.df.attempt > 1).any()  # the policies did work


def _remote() -> rl.Experiment:
    return rl.Experiment(target="https://api.example.com", requests=5, strategy=rl.RateLimit(1))


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: (_remote(), None), "server"),
        (lambda: (_exp(), "http://127.0.0.1:1"), "server"),
        (lambda: (_exp(processes=2), None), "processes"),
        (lambda: (_exp(loop="uvloop"), None), "loop"),
        (lambda: ("not an experiment", None), "experiment"),
    ],
    ids=["remote-without-model", "server-wrong-type", "processes", "uvloop", "experiment"],
)
def test_refusals_before_anything_runs(make: Any, parameter: str) -> None:
    exp, server = make()
    with pytest.raises(rl.ConfigError) as info:
        rl.simulate(exp, server, progress=False)
    assert info.value.parameter == parameter


def test_remote_target_with_a_server_model_is_simulated() -> None:
    exp = rl.Experiment(target="https://api.example.com", requests=5, strategy=rl.RateLimit(1))
    res = _sim(exp, rl.LocalServer(latency=rl.Fixed(0.2)))
    assert (res.df.status == 200).all() and res.meta["virtual_s"] > 4


@pytest.mark.asyncio
async def test_inside_a_running_loop() -> None:
    exp = _exp(strategy=rl.RateLimit(5))
    a = rl.simulate(exp, progress=False)
    b = await rl.asimulate(exp, progress=False)
    pd.testing.assert_frame_equal(a.df, b.df)
    assert b.meta["clock"] == "virtual"


def test_sweep_simulated() -> None:
    base = _exp(requests=40, workers=20, strategy=rl.ConnectionLimit(10))
    server = rl.LocalServer(rate_limit=rl.ServerRateLimit(1000, 1.0))
    sw = rl.sweep(base, simulate=True, server=server, progress=False,
                  latency=[rl.Fixed(0.1), rl.Fixed(0.2)])  # fmt: skip
    assert [r.meta["clock"] for r in sw.results] == ["virtual", "virtual"]
    # each point is rl.simulate with the point's latency on the server (the default host)
    for r, lat in zip(sw.results, (0.1, 0.2), strict=True):
        model = rl.LocalServer(latency=rl.Fixed(lat), rate_limit=server.rate_limit)
        alone = rl.simulate(base, model, progress=False)
        pd.testing.assert_frame_equal(r.df, alone.df)
        # 40 requests through 10 connections: 4 rounds of latency + rtt (+ the host's CPU,
        # 10 fresh connections, and the late wake-ups: a few ms)
        assert 4 * (lat + DEFAULT_RTT_S) < r.df.done_s.max() < 4 * (lat + DEFAULT_RTT_S) + 0.03
    with pytest.raises(rl.ConfigError):
        rl.sweep(base.replace(processes=2), simulate=True, workers=[1, 2])
    with pytest.raises(rl.ConfigError):
        rl.sweep(base, server=server, workers=[1, 2])
