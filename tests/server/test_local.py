"""Tests of ratelab.server.local: a real LocalServer on 127.0.0.1, real aiohttp / urllib clients."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Iterator

import aiohttp
import pytest

from ratelab.errors import ConfigError
from ratelab.experiment.distributions import Fixed, Uniform
from ratelab.server.local import SHUTDOWN_TIMEOUT_S, LocalServer
from ratelab.server.policies import Faults, ServerRateLimit

ID = "X-Ratelab-Id"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(seed=0) as s:
        yield s


def sync_get(url: str, headers: dict[str, str] | None = None) -> int:
    """GET with urllib (no event loop, no threads); returns the status."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def port_is_free(port: int) -> bool:
    """True if a new listening socket can take ``port``. SO_REUSEADDR ignores the TIME_WAIT
    connections a closed server leaves behind, but not a socket that is still listening."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


# --- routes ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_get_echoes_args_headers_origin_url(server: LocalServer) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{server.url}/get?a=1&a=2&b=x"
        async with session.get(url, headers={"x-custom-thing": "hi"}) as r:
            assert r.status == 200
            body = await r.json()
    assert body["args"] == {"a": ["1", "2"], "b": "x"}
    assert body["headers"]["X-Custom-Thing"] == "hi"  # httpbin's title case
    assert body["origin"] == "127.0.0.1"
    assert body["url"] == url


@pytest.mark.asyncio
async def test_anything_echoes_method_json_form_and_data(server: LocalServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/anything/x/y?q=1", json={"k": [1, 2]}) as r:
            body = await r.json()
        assert r.status == 200
        assert body["method"] == "POST"
        assert body["json"] == {"k": [1, 2]}
        assert json.loads(body["data"]) == {"k": [1, 2]}
        assert body["args"] == {"q": "1"}
        assert body["url"].endswith("/anything/x/y?q=1")
        async with session.put(f"{server.url}/anything", data={"f": "v"}) as r:
            body = await r.json()
        assert (body["method"], body["form"], body["data"], body["json"]) == (
            "PUT",
            {"f": "v"},
            "",
            None,
        )
        async with session.delete(f"{server.url}/anything", data=b"\xff\x00") as r:
            body = await r.json()
        assert body["method"] == "DELETE"
        assert body["data"] == "data:application/octet-stream;base64,/wA="


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/status/418", 418),
        ("POST", "/status/503", 503),
        ("GET", "/status/abc", 400),
        ("GET", "/status/99", 400),
        ("GET", "/status/600", 400),
        ("GET", "/delay/abc", 400),
        ("GET", "/delay/-1", 400),
        ("GET", "/delay/nan", 400),
        ("GET", "/bytes/abc", 400),
        ("GET", "/nope", 404),
        ("POST", "/get", 405),
    ],
)
async def test_status_codes(server: LocalServer, method: str, path: str, status: int) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, server.url + path) as r:
            assert r.status == status
            if path.startswith("/status/") and status != 400:
                assert await r.read() == b""
    # every request is logged, errors included
    assert server.log()[["path", "status"]].values.tolist() == [[path, status]]


@pytest.mark.asyncio
async def test_delay_bytes_uuid_headers(server: LocalServer) -> None:
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        async with session.get(f"{server.url}/delay/0.2?a=1") as r:
            body = await r.json()
        assert time.monotonic() - start >= 0.2
        assert body["args"] == {"a": "1"}
        async with session.get(f"{server.url}/bytes/100") as r:
            assert r.headers["Content-Type"] == "application/octet-stream"
            assert len(await r.read()) == 100
        async with session.get(f"{server.url}/uuid") as r:
            assert uuid.UUID((await r.json())["uuid"]).version == 4
        async with session.get(f"{server.url}/headers", headers={"X-Thing": "42"}) as r:
            assert (await r.json())["headers"]["X-Thing"] == "42"


def test_bytes_are_seeded() -> None:
    def payload(seed: int) -> bytes:
        with LocalServer(seed=seed) as s, urllib.request.urlopen(f"{s.url}/bytes/64") as r:
            return r.read()

    assert payload(1) == payload(1)
    assert payload(1) != payload(2)


# --- latency and the log -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fixed_latency_delays_every_request() -> None:
    with LocalServer(latency=Fixed(0.1)) as s:
        async with aiohttp.ClientSession() as session:

            async def one(path: str) -> None:
                async with session.get(s.url + path) as r:
                    await r.read()

            await asyncio.gather(*(one(p) for p in ["/get", "/uuid", "/nope", "/status/500"] * 3))
        log = s.log()
    assert len(log) == 12
    service = log["departure_s"] - log["arrival_s"]
    # asyncio may wake a timer up to its clock resolution (1 ns) early, hence the 1 µs slack;
    # the upper bound is generous (0.5 s) so a loaded CI machine does not fail the test.
    assert (service >= 0.1 - 1e-6).all()
    assert (service < 0.1 + 0.5).all()


@pytest.mark.asyncio
async def test_log_rows_ids_and_monotonic_times(server: LocalServer) -> None:
    n = 20
    async with aiohttp.ClientSession() as session:

        async def one(i: int, run: str) -> None:
            headers = {ID: f"{run}-{i}-{1 + i % 3}"}
            async with session.get(f"{server.url}/get", headers=headers) as r:
                await r.read()

        before = time.monotonic()
        await asyncio.gather(*(one(i, "a1b2c3") for i in range(n)))
        after = time.monotonic()
        await asyncio.gather(*(one(i, "ffff") for i in range(3)))
        async with session.get(f"{server.url}/get", headers={ID: "not-an-id"}) as r:
            await r.read()
        async with session.get(f"{server.url}/uuid") as r:
            await r.read()

    full = server.log()
    assert len(full) == n + 3 + 2
    assert list(full.columns) == ["run", "request_id", "attempt", "method", "path",
                                  "arrival_s", "departure_s", "status", "decision",
                                  "cost_declared", "cost_actual"]  # fmt: skip
    assert {c: str(t) for c, t in full.dtypes.items()} == {
        "run": "category", "request_id": "int64", "attempt": "int16", "method": "category",
        "path": "category", "arrival_s": "float64", "departure_s": "float64",
        "status": "int16", "decision": "category", "cost_declared": "int64",
        "cost_actual": "int64",
    }  # fmt: skip
    no_id = full[full["run"] == ""]
    assert no_id[["request_id", "attempt"]].values.tolist() == [[-1, 0], [-1, 0]]
    assert set(full["decision"]) == {"ok"}

    log = server.log(run="a1b2c3").sort_values("request_id", ignore_index=True)
    assert log["request_id"].tolist() == list(range(n))
    assert log["attempt"].tolist() == [1 + i % 3 for i in range(n)]
    assert set(log["run"]) == {"a1b2c3"} and set(log["status"]) == {200}
    assert set(log["method"]) == {"GET"} and set(log["path"]) == {"/get"}
    # the server stamps with time.monotonic(), the same clock as the client
    assert (log["arrival_s"] >= before).all()
    assert (log["departure_s"] <= after).all()
    assert (log["departure_s"] >= log["arrival_s"]).all()

    shifted = server.log(t0=before, run="a1b2c3").sort_values("request_id", ignore_index=True)
    assert shifted["arrival_s"].tolist() == pytest.approx((log["arrival_s"] - before).tolist())
    assert shifted["departure_s"].between(0, after - before).all()

    assert len(server.log(run="nope")) == 0
    server.clear_log()
    assert len(server.log()) == 0


@pytest.mark.asyncio
async def test_client_disconnect_is_logged_as_499(server: LocalServer) -> None:
    timeout = aiohttp.ClientTimeout(total=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(f"{server.url}/delay/30", headers={ID: "cc-7-2"}) as r:
                await r.read()
    # the row is written when the server notices the disconnect, shortly after the timeout
    assert server._wait_for_rows(1, timeout=10)
    row = server.log().iloc[0]
    assert (row["run"], row["request_id"], row["attempt"], row["status"]) == ("cc", 7, 2, 499)
    assert row["departure_s"] - row["arrival_s"] < 10  # cancelled, not slept for 30 s


# --- lifecycle ---------------------------------------------------------------------------------


def test_stop_leaves_no_thread_and_frees_the_port() -> None:
    before = set(threading.enumerate())
    s = LocalServer().start()
    assert s.running and s.url == f"http://127.0.0.1:{s.port}" and s.port > 0
    assert len(threading.enumerate()) == len(before) + 1
    assert not port_is_free(s.port)
    assert sync_get(f"{s.url}/get") == 200
    s.stop()
    s.stop()  # idempotent
    assert not s.running
    assert set(threading.enumerate()) == before
    assert port_is_free(s.port)
    with LocalServer(port=s.port) as again:  # the same port can be served again
        assert sync_get(f"{again.url}/get") == 200
    assert len(s.log()) == 1  # the log outlives stop()


def test_restart_keeps_the_log() -> None:
    s = LocalServer()
    with s:
        sync_get(f"{s.url}/get")
    with s:
        sync_get(f"{s.url}/uuid")
    assert s.log()["path"].tolist() == ["/get", "/uuid"]


def test_context_manager_starts_and_stops() -> None:
    before = set(threading.enumerate())
    with LocalServer(latency="uniform:0.01,0.02") as s:
        assert s.running
        assert (
            repr(s) == f"LocalServer(url='http://127.0.0.1:{s.port}', latency=Uniform(0.01, 0.02))"
        )
        assert sync_get(f"{s.url}/get") == 200
    assert not s.running
    assert set(threading.enumerate()) == before
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{s.url}/get")


def test_same_name_stops_the_old_server() -> None:
    first = LocalServer(name="demo").start()
    second = LocalServer(name="demo", latency=Uniform(0, 0.01)).start()
    try:
        assert not first.running and second.running
        assert port_is_free(first.port)
        other = LocalServer(name="other").start()
        assert second.running and other.running
        other.stop()
    finally:
        second.stop()


STOP_ALL = """
import threading
from ratelab.server.local import LocalServer
before = set(threading.enumerate())
servers = [LocalServer().start() for _ in range(3)]
assert all(s.running for s in servers)
LocalServer.stop_all()
assert not any(s.running for s in servers)
assert set(threading.enumerate()) == before
servers[0].stop()  # still fine after stop_all
print(*(s.port for s in servers))
"""


def test_stop_all() -> None:
    # in a child process: stop_all() would also stop servers other tests share (conftest's)
    out = subprocess.run(
        [sys.executable, "-c", STOP_ALL], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    ports = [int(p) for p in out.split()]
    assert len(ports) == 3 and all(port_is_free(p) for p in ports)


def test_garbage_collected_server_stops() -> None:
    before = set(threading.enumerate())
    s = LocalServer().start()
    port = s.port
    del s
    gc.collect()
    assert set(threading.enumerate()) == before
    assert port_is_free(port)


def test_port_in_use_names_the_port() -> None:
    before = set(threading.enumerate())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        s = LocalServer(port=port)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            s.start()
        assert not s.running
    assert set(threading.enumerate()) == before


def test_serve_runs_until_ctrl_c() -> None:
    code = "from ratelab.server.local import serve; serve(port=0)"
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout is not None
            line = p.stdout.readline()
            url = line.split()[3]
            assert url.startswith("http://127.0.0.1:")
            assert sync_get(f"{url}/get") == 200
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=30)
        finally:
            p.kill()
    assert p.returncode == 0
    assert "stopped after 1 requests" in out


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"port": -1}, "port"),
        ({"port": 65536}, "port"),
        ({"port": "8080"}, "port"),
        ({"port": 80.0}, "port"),
        ({"port": True}, "port"),
        ({"host": 127}, "host"),
        ({"host": ""}, "host"),
        ({"latency": "bogus"}, "latency"),
        ({"latency": -0.1}, "latency"),
        ({"latency": [0.1]}, "latency"),
        ({"seed": -1}, "seed"),
        ({"seed": "x"}, "seed"),
        ({"name": 3}, "name"),
        ({"rate_limit": 5}, "rate_limit"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"rate_limit": {"limit": 5, "per": 1}}, "rate_limit"),
        ({"rate_limit": "0/1s"}, "ServerRateLimit(limit)"),
        ({"rate_limit": "5/1s:leaky"}, "ServerRateLimit(algorithm)"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 1.5}, "max_concurrency"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"overload_status": 200}, "overload_status"),
        ({"overload_status": "503"}, "overload_status"),
        ({"faults": {"rate": 0.1}}, "faults"),
        ({"faults": {"error_rate": 2}}, "Faults(error_rate)"),
        ({"faults": 0.1}, "faults"),
    ],
)
def test_bad_config_names_the_parameter(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        LocalServer(**kwargs)  # type: ignore[arg-type]
    assert info.value.parameter == parameter


def test_bad_log_arguments(server: LocalServer) -> None:
    with pytest.raises(ConfigError) as info:
        server.log(t0="now")  # type: ignore[arg-type]
    assert info.value.parameter == "t0"
    with pytest.raises(ConfigError) as info:
        server.log(run=1)  # type: ignore[arg-type]
    assert info.value.parameter == "run"


def test_url_needs_a_port() -> None:
    s = LocalServer()
    with pytest.raises(RuntimeError, match="start"):
        _ = s.url
    assert repr(s) == "LocalServer(host='127.0.0.1', port=0, latency=None)"
    assert LocalServer(port=8123).url == "http://127.0.0.1:8123"


def test_repr_shows_the_policies() -> None:
    s = LocalServer(
        rate_limit=ServerRateLimit(20, 1.0, algorithm="sliding_window"),
        max_concurrency=4,
        faults=Faults(error_rate=0.1, seed=1),
        name="p",
    )
    assert repr(s) == (
        "LocalServer(host='127.0.0.1', port=0, latency=None, "
        "rate_limit=ServerRateLimit(20, 1.0, algorithm='sliding_window'), max_concurrency=4, "
        "faults=Faults(error_rate=0.1, seed=1), name='p')"
    )
    both = LocalServer(rate_limit=["100/60s", ServerRateLimit(2, routes="/uuid")],
                       max_concurrency=1, overload_status=429)  # fmt: skip
    assert repr(both) == (
        "LocalServer(host='127.0.0.1', port=0, latency=None, rate_limit=[ServerRateLimit(100, "
        "60.0), ServerRateLimit(2, 1.0, routes='/uuid')], max_concurrency=1, overload_status=429)"
    )


# --- server-side policies ----------------------------------------------------------------------


async def fetch(
    session: aiohttp.ClientSession, url: str, method: str = "GET", rid: int = 0
) -> tuple[int, dict[str, str]]:
    async with session.request(method, url, headers={ID: f"pol-{rid}-1"}) as r:
        await r.read()
        return r.status, dict(r.headers)


@pytest.mark.asyncio
async def test_rate_limit_burst_gets_exactly_limit_through() -> None:
    # 30 requests at once against 10 per 1 s: all arrive well inside one window, so exactly
    # 10 pass. Allowed requests get the latency, rejected ones are answered at once.
    limit = ServerRateLimit(10, 1.0)
    with LocalServer(rate_limit=limit, latency=Fixed(0.1), headers="ietf-06") as s:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *(fetch(session, f"{s.url}/get", rid=i) for i in range(30))
            )
        log = s.log()
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 10 + [429] * 20
    for status, headers in results:
        assert headers["RateLimit-Limit"] == "10"
        assert headers["RateLimit-Reset"] == "1"
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            assert 0 < int(headers["X-Retry-After-Ms"]) <= 1000
            assert headers["RateLimit-Remaining"] == "0"
        else:
            assert "Retry-After" not in headers
    remaining = sorted(int(h["RateLimit-Remaining"]) for st, h in results if st == 200)
    assert remaining == list(range(10))
    assert sorted(zip(log["status"], log["decision"], strict=True)) == (
        [(200, "ok")] * 10 + [(429, "rate_limited")] * 20
    )
    service = log["departure_s"] - log["arrival_s"]
    assert (service[log["decision"] == "ok"] >= 0.1 - 1e-6).all()
    assert (service[log["decision"] == "rate_limited"] < 0.1).all()


@pytest.mark.asyncio
async def test_global_and_per_route_limits_must_all_pass() -> None:
    limits = [ServerRateLimit(100, 60.0), ServerRateLimit(2, 60.0, routes=["/uuid", "/nope"])]
    with LocalServer(rate_limit=limits, headers="ietf-06") as s:
        async with aiohttp.ClientSession() as session:
            got = [await fetch(session, s.url + path) for path in
                   ["/uuid", "/uuid", "/uuid", "/get", "/nope", "/status/404"]]  # fmt: skip
        log = s.log()

    def seen(status: int, headers: dict[str, str]) -> tuple[object, ...]:
        keys = ("RateLimit-Limit", "RateLimit-Remaining", "Retry-After")
        return (status, *(headers.get(k) for k in keys))

    assert [seen(*g) for g in got] == [
        (200, "2", "1", None),  # reported: the limit closest to running out
        (200, "2", "0", None),
        (429, "2", "0", "60"),  # the route limit says no; the global one does not count it
        (200, "100", "97", None),  # the global limit saw 3 requests pass
        (429, "2", "0", "60"),  # a 404 route counts too: the limit is in front of the router
        (404, "100", "96", None),  # error responses carry the headers
    ]
    assert log["decision"].tolist() == ["ok", "ok", "rate_limited", "ok", "rate_limited", "ok"]


@pytest.mark.asyncio
@pytest.mark.parametrize("algorithm", ["sliding_window", "token_bucket", "gcra"])
async def test_each_algorithm_limits_a_burst(algorithm: str) -> None:
    with LocalServer(rate_limit=ServerRateLimit(3, 60.0, algorithm=algorithm)) as s:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(fetch(session, f"{s.url}/get") for _ in range(8)))
    assert sorted(status for status, _ in results) == [200] * 3 + [429] * 5
    # 60 s window: the next request passes in 20 s (token bucket, GCRA) or 60 s (log)
    retry = {int(h["Retry-After"]) for st, h in results if st == 429}
    assert retry == ({60} if algorithm == "sliding_window" else {20})


@pytest.mark.asyncio
@pytest.mark.parametrize("overload_status", [503, 429])
async def test_max_concurrency_sheds_the_excess(overload_status: int) -> None:
    # 6 requests at once, 2 slots held for 0.5 s each: the other 4 arrive while both are
    # held (connecting takes milliseconds) and are turned away at once.
    kwargs = {} if overload_status == 503 else {"overload_status": overload_status}
    with LocalServer(max_concurrency=2, latency=Fixed(0.5), **kwargs) as s:  # type: ignore[arg-type]
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(fetch(session, f"{s.url}/get") for _ in range(6)))
            after = await fetch(session, f"{s.url}/get")  # the slots were given back
        log = s.log()
    assert sorted(status for status, _ in results) == [200] * 2 + [overload_status] * 4
    assert after[0] == 200
    assert sorted(zip(log["status"], log["decision"], strict=True)) == sorted(
        [(200, "ok")] * 3 + [(overload_status, "overloaded")] * 4
    )
    service = log["departure_s"] - log["arrival_s"]
    assert (service[log["decision"] == "overloaded"] < 0.5).all()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 502])
async def test_error_faults(status: int) -> None:
    faults = Faults(error_rate=1.0) if status == 500 else Faults(error_rate=1.0, status=status)
    with LocalServer(faults=faults) as s:
        async with aiohttp.ClientSession() as session:
            results = [await fetch(session, f"{s.url}/get", rid=i) for i in range(10)]
        log = s.log()
    assert [st for st, _ in results] == [status] * 10
    assert log["status"].tolist() == [status] * 10
    assert set(log["decision"]) == {"fault"}


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_reset_faults_drop_the_connection(method: str) -> None:
    with LocalServer(faults=Faults(reset_rate=1.0)) as s:
        async with aiohttp.ClientSession() as session:
            for i in range(5):
                with pytest.raises(aiohttp.ClientError) as info:
                    await fetch(session, f"{s.url}/anything", method, rid=i)
                assert isinstance(
                    info.value, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError
                )
        log = s.log()
    assert set(log["status"]) == {444} and set(log["decision"]) == {"fault"}
    per_request = log.groupby("request_id").size()
    assert per_request.index.tolist() == list(range(5))
    if method == "POST":
        assert (per_request == 1).all()
    else:  # aiohttp resends an idempotent request once after a disconnect, unseen by the caller
        assert per_request.isin([1, 2]).all()


@pytest.mark.asyncio
async def test_stall_faults_never_answer_and_do_not_hold_up_stop() -> None:
    before = set(threading.enumerate())
    s = LocalServer(faults=Faults(stall_rate=1.0)).start()
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(asyncio.TimeoutError):
            await fetch(session, f"{s.url}/get", rid=1)
    assert s._wait_for_rows(1, timeout=10)  # logged when the server sees the hang-up
    # a second stall is still open when the server stops: stop() hangs up on it at once
    # instead of giving it the shutdown grace period
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(fetch(session, f"{s.url}/get", rid=2))
        await asyncio.sleep(0.3)
        assert not pending.done()
        start = time.monotonic()
        s.stop()
        took = time.monotonic() - start
        with pytest.raises(aiohttp.ClientError):
            await pending
    assert took < min(2.0, SHUTDOWN_TIMEOUT_S)
    assert set(threading.enumerate()) == before
    log = s.log()
    assert log["request_id"].tolist() == [1, 2]
    assert set(log["status"]) == {499} and set(log["decision"]) == {"fault"}


def test_seeded_faults_are_reproducible() -> None:
    def statuses(**kwargs: object) -> list[int]:
        with LocalServer(**kwargs) as s:  # type: ignore[arg-type]
            return [sync_get(f"{s.url}/get") for _ in range(50)]

    first = statuses(faults=Faults(error_rate=0.3, seed=7))
    assert first == statuses(faults=Faults(error_rate=0.3, seed=7))
    assert set(first) == {200, 500}
    assert first != statuses(faults=Faults(error_rate=0.3, seed=8))
    # without a seed of its own, Faults draws from the server's seed
    assert statuses(seed=3, faults=Faults(error_rate=0.3)) == statuses(
        seed=3, faults=Faults(error_rate=0.3)
    )


def test_policies_keep_the_latency_and_data_streams_of_a_seed() -> None:
    def payload(**kwargs: object) -> bytes:
        with LocalServer(seed=1, **kwargs) as s:  # type: ignore[arg-type]
            with urllib.request.urlopen(f"{s.url}/bytes/64") as r:
                return r.read()

    assert payload() == payload(faults=Faults(error_rate=0.001), max_concurrency=5)


def test_restart_starts_the_rate_limit_afresh() -> None:
    s = LocalServer(rate_limit="1/60s")
    with s:
        assert [sync_get(f"{s.url}/get") for _ in range(2)] == [200, 429]
    with s:
        assert sync_get(f"{s.url}/get") == 200


def test_serve_with_a_rate_limit() -> None:
    code = (
        "from ratelab.server.local import serve; "
        "serve(port=0, rate_limit='1/60s:gcra', max_concurrency=4)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout is not None
            line = p.stdout.readline()
            url = line.split()[3]
            assert (
                "rate_limit=ServerRateLimit(1, 60.0, algorithm='gcra'), max_concurrency=4" in line
            )
            assert [sync_get(f"{url}/get") for _ in range(2)] == [200, 429]
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=30)
        finally:
            p.kill()
    assert p.returncode == 0
    assert "stopped after 2 requests" in out


# --- exposure: hosts beyond this machine, large bodies -------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("example.com", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    from ratelab.experiment.experiment import is_loopback_host

    assert is_loopback_host(host) is loopback


def test_a_server_on_every_interface_warns_before_it_binds() -> None:
    from ratelab.errors import RatelabWarning

    server = LocalServer(host="0.0.0.0")
    threads = set(threading.enumerate())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RatelabWarning)  # the warning stops start() here
        with pytest.raises(RatelabWarning, match="listens beyond this machine"):
            server.start()
    assert not server.running and server.port == 0  # nothing was bound
    assert set(threading.enumerate()) <= threads
    assert issubclass(RatelabWarning, UserWarning)


def test_a_loopback_server_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with LocalServer(host="localhost") as s:
            assert s.running


def test_bytes_are_capped_at_10_mib_streamed_and_seeded() -> None:
    from ratelab.server.app import MAX_BYTES

    assert MAX_BYTES == 10 * 1024 * 1024

    def get(s: LocalServer, n: int) -> tuple[bytes, str | None, str | None]:
        with urllib.request.urlopen(f"{s.url}/bytes/{n}") as r:
            return r.read(), r.headers["Content-Length"], r.headers["RateLimit-Policy"]

    with LocalServer(seed=1, rate_limit="100/1s") as s:
        body, length, limit = get(s, 3 * MAX_BYTES)
        assert len(body) == MAX_BYTES and length == str(MAX_BYTES)
        assert limit == '"requests";q=100;w=1'  # the policy's headers reach a stream too
        first = get(s, 200_000)[0]
    with LocalServer(seed=1, rate_limit="100/1s") as s:
        get(s, 3 * MAX_BYTES)
        assert get(s, 200_000)[0] == first
