"""SharedRateLimit: one limit in Redis for many processes; ratelab.testing.redis.

The tests that need a real Redis start a throwaway one (``redis_server.start()``); without
the ``redis-server`` binary they are skipped locally and FAIL when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest

import ratelab as rl
from ratelab.client.processes import PROCESS_COLUMN, run_processes
from ratelab.client.shared_limit import RedisUnavailableError, SharedGuard, SharedRateLimit
from ratelab.client.shared_limit import available as limits_available
from ratelab.errors import ConfigError, RatelabError
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.strategies import as_strategy
from ratelab.testing import redis as redis_server


def _need(ok: bool, message: str) -> None:
    """Skip without ``ok`` locally; in CI (``CI`` set) that is a failure."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI must run the shared-limit tests")
    pytest.skip(message)


@pytest.fixture
def limits_installed() -> None:
    _need(limits_available(), "limits[async-redis] is not installed (pip install 'ratelab[redis]')")


@pytest.fixture
def redis(limits_installed: None) -> Iterator[redis_server.RedisHandle]:
    """A fresh, empty Redis per test (starting one takes ~20 ms)."""
    _need(redis_server.available(), "redis-server is not installed (apt-get install redis-server)")
    with redis_server.start() as handle:
        yield handle


@pytest.fixture(scope="module")
def limit_server() -> Iterator[rl.LocalServer]:
    with rl.LocalServer(seed=3, name="test-shared") as s:
        yield s


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


def max_in_window(times: np.ndarray, window_s: float = 1.0) -> int:
    """The most events in any half-open window [t, t + window_s) (the server's count)."""
    a = np.sort(np.asarray(times, float))
    if len(a) == 0:
        return 0
    return int((np.searchsorted(a, a + window_s, "left") - np.arange(len(a))).max())


def test_max_in_window_counts_half_open_windows() -> None:
    assert max_in_window(np.array([0.0, 0.5, 0.999, 1.0, 1.5])) == 3
    assert max_in_window(np.array([0.0, 1.0, 2.0])) == 1
    assert max_in_window(np.array([])) == 0


# ------------------------------------------------------------------ the strategy object


def test_repr_roundtrip_and_steady_rate() -> None:
    s = SharedRateLimit(20)
    assert repr(s) == "SharedRateLimit(20)"
    assert s.steady_rate_per_s == 20.0 and s.rate_limit_per_s == 20.0
    t = SharedRateLimit(5, period_s=2.0, redis="redis://127.0.0.1:7000/1", algorithm="fixed_window")
    assert t.period_s == 2 and isinstance(t.period_s, int) and t.steady_rate_per_s == 2.5
    assert repr(t) == (
        "SharedRateLimit(5, period_s=2, redis='redis://127.0.0.1:7000/1', algorithm='fixed_window')"
    )
    assert as_strategy(t.to_dict()) == t
    combo = SharedRateLimit(10, key="k") + rl.ConnectionLimit(4)
    assert as_strategy(combo.to_dict()) == combo
    exp = Experiment(target="http://127.0.0.1:9", strategy=combo)
    assert Experiment.from_dict(exp.to_dict()) == exp


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"max_rate": 2.5}, "max_rate"),
        ({"max_rate": 0}, "max_rate"),
        ({"max_rate": 10, "period_s": 0.5}, "period_s"),
        ({"max_rate": 10, "redis": "http://127.0.0.1:6379"}, "redis"),
        ({"max_rate": 10, "key": ""}, "key"),
        ({"max_rate": 10, "algorithm": "token_bucket"}, "algorithm"),
        ({"max_rate": 10, "redis_timeout_s": 0}, "redis_timeout_s"),
        ({"max_rate": 10, "margin_s": 1.0}, "margin_s"),
    ],
)
def test_invalid_values_name_the_parameter(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(ConfigError, match=rf"SharedRateLimit\({parameter}\)"):
        SharedRateLimit(**kwargs)  # type: ignore[arg-type]


def test_fractional_period_says_why() -> None:
    with pytest.raises(ConfigError, match="whole seconds"):
        SharedRateLimit(10, period_s=0.5)


# ------------------------------------------------------------------ no Redis: clear, quick


def test_preflight_says_how_to_start_redis(limits_installed: None) -> None:
    shared = SharedRateLimit(10, redis=f"redis://127.0.0.1:{_closed_port()}/0", redis_timeout_s=0.5)
    with pytest.raises(RedisUnavailableError, match=r"redis-server --port 6379") as info:
        shared.preflight()
    assert "ratelab.testing.redis.start()" in str(info.value)
    exp = rl.Experiment(target="http://127.0.0.1:9", requests=2, workers=2, strategy=shared)
    with pytest.raises(RedisUnavailableError):  # before any process is spawned
        run_processes(exp, processes=2, progress=False)


def test_without_redis_every_request_is_a_quick_error_row(
    limits_installed: None, limit_server: rl.LocalServer
) -> None:
    shared = SharedRateLimit(10, redis=f"redis://127.0.0.1:{_closed_port()}/0", redis_timeout_s=0.5)
    exp = rl.Experiment(target=limit_server, requests=12, workers=4, strategy=shared)
    before = len(limit_server.log())
    started = time.monotonic()
    result = rl.run(exp, progress=False)
    assert time.monotonic() - started < 5
    assert (result.df["error"] == "RedisUnavailableError").all()
    assert (result.df["status"] == 0).all()
    assert len(limit_server.log()) == before  # nothing was sent without the limiter's yes
    gc.collect()  # an unclosed socket would surface here as an error (filterwarnings)


# ------------------------------------------------------------------ redis_server


def test_redis_server_start_and_stop(redis: redis_server.RedisHandle) -> None:
    assert redis.url.startswith("redis://127.0.0.1:") and redis.ping()
    assert redis_server.ping(redis.url)
    directory = redis.directory
    assert directory.is_dir()
    redis.stop()
    redis.stop()  # idempotent
    assert not redis.running and not redis.ping(timeout_s=0.2) and not directory.exists()


def test_redis_server_missing_binary_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not redis_server.available()
    with pytest.raises(RatelabError, match="apt-get install redis-server"):
        redis_server.start()


# ------------------------------------------------------------------ against a real Redis


def test_in_process_limit_waits_and_cleans_up(
    redis: redis_server.RedisHandle, limit_server: rl.LocalServer
) -> None:
    """In one process: 8 requests at 5/s -> the last 3 wait for the window (~1 s)."""
    shared = SharedRateLimit(5, redis=redis.url)
    exp = rl.Experiment(target=limit_server, requests=8, workers=4, strategy=shared)
    result = rl.run(exp, progress=False)
    df = result.df
    assert (df["status"] == 200).all()
    waited = (df["admitted_s"] - df["ready_s"]).to_numpy()
    assert (waited > 0.9).sum() == 3, waited  # the limiter wait column shows it
    # The window holds 5 by the client's clock at each Redis hit; the server counts each a
    # delivery delay later, and on a loaded machine those delays differ by more than a
    # reused slot's gap: 7 was measured with both cores loaded several times over (5 on a
    # quiet one). Without the limit all 8 arrive within the first few milliseconds.
    assert max_in_window(result.server_log["arrival_s"].to_numpy()) <= 7
    gc.collect()


def test_processes_share_one_limit(
    redis: redis_server.RedisHandle, limit_server: rl.LocalServer
) -> None:
    """3 processes, SharedRateLimit(10), 40 requests: the SERVER never sees more than
    10 (+1) requests in any 1 s window, so the run takes >= 3 s; per-process limits of
    10/s would have let ~30/s through.

    Why +1. The moving window admits at most R hits whose timestamps (each client's
    ``time.time()`` as its hit goes to Redis) lie in any CLOSED 1 s window; the server's
    half-open window [t, t+1) lies inside one, so the window shapes alone allow no excess.
    But the server counts a request a delivery delay after its timestamp (Redis reply,
    HTTP send, a fresh connection, the scheduler). A waiting request reuses a slot
    ``margin_s`` after it frees, so two hits of one slot reach the server less than 1 s
    apart only if their delays differ by more than the margin: then that window holds
    R + 1. Here margin_s = 50 ms: on a 2-core machine running the 3 clients, Redis and
    the server (and other jobs), delays differ by up to ~20 ms, and with margin_s=0 this
    test sees 12-16. Two such outliers in one window would be R + 2; we allow one.
    """
    rate, n, procs = 10, 40, 3
    shared = SharedRateLimit(rate, redis=redis.url, key="test-processes", margin_s=0.05)
    exp = rl.Experiment(target=limit_server, requests=n, workers=6, strategy=shared, seed=5)
    result = run_processes(exp, processes=procs, progress=False)
    df, log = result.df, result.server_log
    assert log is not None
    assert (df["status"] == 200).all() and len(log) == n
    assert set(df[PROCESS_COLUMN]) == set(range(procs))
    arrivals = log["arrival_s"].to_numpy()
    assert max_in_window(arrivals) <= rate + 1, np.sort(arrivals)
    assert arrivals.max() - arrivals.min() >= 2.9  # 40 at 10/s: bursts at 0, 1, 2, 3 s
    # the 6 workers spent the ~3 s waiting in the limiter, not in the server
    assert (df["admitted_s"] - df["ready_s"]).sum() > 10.0


@pytest.mark.timeout(60)
def test_redis_stopped_mid_run_gives_error_rows_not_a_hang(
    redis: redis_server.RedisHandle, limit_server: rl.LocalServer
) -> None:
    n = 40  # at 10/s: 3+ s if Redis stayed
    shared = SharedRateLimit(10, redis=redis.url, redis_timeout_s=0.5)
    exp = rl.Experiment(target=limit_server, requests=n, workers=4, strategy=shared)
    before = len(limit_server.log())
    stopped_at: list[float] = []

    def stop_redis_when_running() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(limit_server.log()) - before < 12:
            time.sleep(0.01)
        stopped_at.append(time.monotonic())
        redis.stop()

    thread = threading.Thread(target=stop_redis_when_running, daemon=True)
    thread.start()
    result = rl.run(exp, progress=False)
    thread.join()
    assert time.monotonic() - stopped_at[0] < 5  # waiting and later acquires failed quickly
    df = result.df
    assert len(df) == n
    ok = df["status"] == 200
    assert 12 <= ok.sum() < n
    assert set(df.loc[~ok, "error"].astype(str)) == {"RedisUnavailableError"}
    # fails closed: nothing reached the server well after Redis went away
    stop_s = stopped_at[0] - result.meta["t0_monotonic"]
    assert result.server_log["arrival_s"].max() < stop_s + 0.5
    gc.collect()


def test_hung_redis_times_out(redis: redis_server.RedisHandle) -> None:
    """A Redis that accepts but never answers (SIGSTOP): acquire fails within ~3 timeouts."""
    shared = SharedRateLimit(100, redis=redis.url, redis_timeout_s=0.2)

    async def main() -> float:
        guard = shared.guard()
        await guard.acquire("/get")  # connected and warm
        os.kill(redis.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(RedisUnavailableError, match="not answering"):
                await guard.acquire("/get")
            return time.monotonic() - started
        finally:
            os.kill(redis.pid, signal.SIGCONT)
            await guard.aclose()  # type: ignore[attr-defined]

    assert asyncio.run(main()) < 2.0
    gc.collect()


@pytest.mark.timeout(60)
def test_a_frozen_redis_ends_the_run_promptly_with_every_row(
    redis: redis_server.RedisHandle, limit_server: rl.LocalServer
) -> None:
    """SIGSTOPped Redis: the first acquire times out after redis_timeout_s (1 s), every
    other one fails at once; before, each took ~3 s (timeout and two reconnect tries), so
    these 60 requests took minutes."""
    n = 60
    shared = SharedRateLimit(1000, redis=redis.url)
    assert shared.redis_timeout_s == 1.0
    exp = rl.Experiment(target=limit_server, requests=n, workers=4, strategy=shared)
    before = len(limit_server.log())
    os.kill(redis.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = rl.run(exp, progress=False)
        elapsed = time.monotonic() - started
    finally:
        os.kill(redis.pid, signal.SIGCONT)
    assert elapsed < 6.0  # one timeout, not one per request
    df = result.df
    assert len(df) == n and sorted(df["request_id"]) == list(range(n))
    assert (df["error"] == "RedisUnavailableError").all() and (df["status"] == 0).all()
    assert len(limit_server.log()) == before  # fails closed: nothing was sent
    gc.collect()


def test_redis_timeout_s_is_plain_data_and_timeout_s_its_old_name() -> None:
    s = SharedRateLimit(10, redis_timeout_s=0.25)
    assert repr(s) == "SharedRateLimit(10, redis_timeout_s=0.25)"
    data = s.to_dict()
    assert data["redis_timeout_s"] == 0.25 and "timeout_s" not in data
    assert as_strategy(data) == s
    exp = Experiment(target="http://127.0.0.1:9", strategy=s)
    assert Experiment.from_dict(exp.to_dict()) == exp
    old = {k: v for k, v in data.items() if k != "redis_timeout_s"} | {"timeout_s": 0.25}
    assert as_strategy(old) == s  # old plain data loads silently
    with pytest.warns(DeprecationWarning, match="redis_timeout_s"):
        assert SharedRateLimit(10, timeout_s=0.25) == s


def test_other_algorithms_also_wait(redis: redis_server.RedisHandle) -> None:
    """fixed_window and sliding_window_counter, side by side on one loop: 3 per second,
    so the 4th acquire of each waits for the next window."""

    async def four_acquires(algorithm: str) -> list[float]:
        guard = SharedRateLimit(3, redis=redis.url, key=algorithm, algorithm=algorithm).guard()
        times = []
        try:
            for _ in range(4):
                await guard.acquire("/get")
                times.append(time.monotonic())
        finally:
            await guard.aclose()  # type: ignore[attr-defined]
        return times

    async def main() -> list[list[float]]:
        return list(
            await asyncio.gather(*map(four_acquires, ["fixed_window", "sliding_window_counter"]))
        )

    for times in asyncio.run(main()):
        assert times[2] - times[0] < 0.3  # three at once ...
        assert times[3] - times[0] >= 0.5  # ... the fourth in the next window
    gc.collect()


def _reuse_gaps(arrivals_s: np.ndarray, rate: int, period_s: float = 1.0) -> np.ndarray:
    """For each arrival k + rate: how long after arrival k's slot freed (k + period_s) it
    came, in seconds (negative: inside the same window, so a strict server refuses it)."""
    a = np.sort(np.asarray(arrivals_s, float))
    return a[rate:] - a[:-rate] - period_s


def test_the_margin_is_one_atomic_check_in_redis(redis: redis_server.RedisHandle) -> None:
    """The moving window's Lua script, with the stamps given: a hit is refused while the
    R-th most recent lies within period_s + margin_s (the reply names it), counted after."""
    shared = SharedRateLimit(2, redis=redis.url, key="atomic", margin_s=0.3)

    async def hits(stamps: list[float]) -> list[list[bytes | int]]:
        guard = SharedGuard(shared)
        try:
            script, key = guard._margin_script  # type: ignore[misc]
            return [list(await script.execute([key], guard._margin_args(t))) for t in stamps]
        finally:
            await guard.aclose()

    replies = asyncio.run(hits([100.0, 100.5, 101.0, 101.29, 101.31, 101.5, 101.79, 101.81]))
    ok = [int(r[0]) for r in replies]
    assert ok == [1, 1, 0, 0, 1, 0, 0, 1]
    assert [float(r[1]) for r in replies if int(r[0]) == 0] == [100.0, 100.0, 100.5, 100.5]
    # limits reads the same list as its own moving window (newest first)
    limiter_stats = _redis_stamps(redis, shared)
    assert list(limiter_stats) == [101.81, 101.31]


class _Monitor:
    """Redis MONITOR on its own socket: every command Redis runs, scripts' included, so the
    stamp of every counted hit (the script's ``lpush``) is seen, by the clients' clocks."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
        self.sock.settimeout(None)  # quiet while processes start: keep reading
        self.sock.sendall(b"MONITOR\r\n")
        self.data = bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                self.data += chunk

    def pushed(self, key_end: str) -> np.ndarray:
        """The stamps pushed on keys ending with ``key_end``, in time order."""
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.sock.close()
        found = re.findall(rb'"lpush" "([^"]*)" "([^"]*)"', bytes(self.data))
        return np.sort([float(v) for k, v in found if k.endswith(key_end.encode())])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("processes", [1, 4])
def test_the_margin_holds_at_a_strict_server_of_the_same_limit(
    redis: redis_server.RedisHandle, processes: int
) -> None:
    """Issue 17: 4 processes x 4 tasks at R=50 reused slots 10-20 ms after they freed, and
    a strict server of the same limit refused some (one process alone: 4-12 a run).

    Exact, by the clients' clocks: every counted hit's stamp (seen by Redis MONITOR) is
    >= period_s + margin_s after the hit R before it. At the server each request arrives a
    delivery delay after its stamp (Redis reply, HTTP send, the scheduler), so a reused
    slot's gap there is margin_s plus the difference of two delays. Measured here (2
    cores, load 4-11 from other jobs), Redis reply to server: ~10 ms on average, up to
    ~40 ms; but 30-90 ms for a freshly started process's first requests, and over 100 ms
    with 4 processes when the machine is busiest. So margin_s = 0.1 s; alone: every slot
    reused >= 20 ms after it freed at the server (tolerance 80 ms) and zero 429s. With 4
    processes the server-side count is reported, not asserted (see the module doc of
    ratelab.client.shared_limit: a margin covers delays that differ by less than it)."""
    rate, margin, n = 50, 0.1, 250
    server = rl.LocalServer(
        seed=1, rate_limit=rl.ServerRateLimit(rate, 1.0, algorithm="sliding_window")
    )
    key = f"strict-{processes}"
    with server:
        shared = SharedRateLimit(rate, redis=redis.url, key=key, margin_s=margin)
        exp = rl.Experiment(target=server, requests=n, workers=4 * processes, strategy=shared)
        monitor = _Monitor(redis.url)
        result = rl.run(exp, processes=processes, progress=False)
        stamps = monitor.pushed(f"/{key}/{rate}/1/second")  # not the warm-up key
    assert len(stamps) == n  # every request's hit, and no other
    assert (stamps[rate:] - stamps[:-rate]).min() >= 1.0 + margin - 1e-6
    log = result.server_log
    assert log is not None and len(log) == n
    arrivals = np.sort(log["arrival_s"].to_numpy())
    gaps = _reuse_gaps(arrivals, rate)
    refused = np.sort(log.loc[log["status"] == 429, "arrival_s"].to_numpy())
    print(f"processes={processes}: 429 at {refused - arrivals[0]};",
          "first window", np.sort(gaps[:rate])[:3], "later", np.sort(gaps[rate:])[:3])  # fmt: skip
    assert len(result.df) == n and set(result.df["status"]) <= {200, 429}
    if processes == 1:
        assert len(refused) == 0 and gaps.min() >= margin - 0.08, np.sort(gaps)[:5]


def _redis_stamps(redis: redis_server.RedisHandle, shared: SharedRateLimit) -> np.ndarray:
    """The moving window's list in Redis (newest first): the stamps of the last hits."""

    async def read() -> list[bytes]:
        guard = SharedGuard(shared)
        try:
            _script, key = guard._margin_script  # type: ignore[misc]
            return list(await guard._storage.bridge.get_connection().lrange(key, 0, -1))
        finally:
            await guard.aclose()

    return np.array([float(x) for x in asyncio.run(read())])
