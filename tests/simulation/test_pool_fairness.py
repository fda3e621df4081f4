"""aiohttp's connection pool is not first come, first served, and ``rl.simulate``'s pool keeps
that (notebook 21). ``BaseConnector.connect`` takes an idle connection (``_get``) before it
looks at the waiters, and a worker that gives its connection back asks again without
waiting in between (the job queue is not empty, the limiter has room): it gets the
connection back, and the waiter woken by the release finds none. So with more workers than
connections, the requests that queued at the start are served only once the job queue is
empty."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import ratelab as rl

URL = "http://127.0.0.1:8080"  # never contacted
NS = 1e-9
REQUESTS, WORKERS, CONNECTIONS = 30, 10, 2
QUEUED_FIRST = list(range(CONNECTIONS, WORKERS))  # the requests the other workers took first


def _exp(target: object, strategy: rl.Strategy) -> rl.Experiment:
    return rl.Experiment(
        target=target, requests=REQUESTS, workers=WORKERS, strategy=strategy, seed=1
    )  # type: ignore[arg-type]


def test_the_simulated_pool_serves_a_returning_worker_before_the_waiters() -> None:
    server = rl.LocalServer(latency=rl.Fixed(0.1))
    exp = _exp(URL, rl.RateLimit(1000) + rl.ConnectionLimit(CONNECTIONS))
    host = {"rtt_s": 0.0, "cpu_s": 0.0, "late_s": 0.0, "connect_s": 0.0}  # exact times
    df = rl.simulate(exp, server, progress=False, **host).df
    waited = df.pool_queued_s.notna()
    assert sorted(df.request_id[waited]) == QUEUED_FIRST
    assert df.pool_queued_s[waited].to_numpy() == pytest.approx([0.0] * 8, abs=NS)
    # workers 0 and 1 keep the connections: requests 0, 1 and 10-29, 11 rounds of 0.1 s;
    # a first-come-first-served pool would serve the waiters at 0.1, 0.1, 0.2, 0.2, ...
    acquired = sorted(df.pool_acquired_s[waited])
    assert acquired == pytest.approx([1.1, 1.1, 1.2, 1.2, 1.3, 1.3, 1.4, 1.4], abs=NS)
    assert df.worker.value_counts().to_dict() == {0: 11, 1: 11} | {w: 1 for w in QUEUED_FIRST}
    assert df.done_s.max() == pytest.approx(1.5, abs=NS)


def test_a_semaphore_sized_to_the_pool_serves_them_in_turn() -> None:
    """The cure the notebook shows: asyncio.Semaphore queues first come, first served."""
    server = rl.LocalServer(latency=rl.Fixed(0.1))
    strategy = rl.RateLimit(1000) + rl.Concurrency(CONNECTIONS) + rl.ConnectionLimit(CONNECTIONS)
    host = {"rtt_s": 0.0, "cpu_s": 0.0, "late_s": 0.0, "connect_s": 0.0}
    df = rl.simulate(_exp(URL, strategy), server, progress=False, **host).df
    assert df.pool_queued_s.isna().all()
    admitted = df.sort_values("request_id").admitted_s.to_numpy()
    assert admitted == pytest.approx([0.1 * (i // CONNECTIONS) for i in range(REQUESTS)], abs=NS)
    assert set(df.worker.value_counts()) == {REQUESTS // WORKERS}
    assert df.done_s.max() == pytest.approx(1.5, abs=NS)  # the same run length


def test_real_aiohttp_does_what_the_simulation_does(
    fresh_server: Callable[..., rl.LocalServer],
) -> None:
    """On the real 127.0.0.1 server: the same requests wait, and get a connection only after
    the last request was taken from the job queue. Orderings and counts only (no times), so
    a busy machine does not change them: nothing between a worker's release and its next
    ``connect`` waits, however slow each step is."""
    srv = fresh_server(latency=rl.Fixed(0.02))
    exp = _exp(srv, rl.RateLimit(1000) + rl.ConnectionLimit(CONNECTIONS))
    for df in (rl.run(exp, progress=False).df, rl.simulate(exp, srv, progress=False).df):
        assert (df.status == 200).all()
        waited = df.pool_queued_s.notna()
        assert sorted(df.request_id[waited]) == QUEUED_FIRST
        assert (df.pool_acquired_s[waited] >= df.dequeued_s.max()).all()
        sent = df.worker.value_counts()
        assert sent.iloc[:CONNECTIONS].sum() == REQUESTS - len(QUEUED_FIRST)
        assert (sent.iloc[CONNECTIONS:] == 1).all() and len(sent) == WORKERS
