"""Issue 13: your own request function (``request=fn``), real requests (headers, body,
auth, per-endpoint overrides, secrets redacted), and the server's rate-limit headers
recorded (``result.headers``, ``rl.plot_headers``); issue 17: a pool wait that never got a
connection is not a latency; bodies counted while streaming. Requests go to 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import json
import pickle
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from aiohttp import web

import ratelab as rl
from ratelab.analysis.files import HEADERS_KEY
from ratelab.client.engine import Engine
from ratelab.errors import ConfigError
from ratelab.experiment.request_options import NOT_IMPORTABLE, REDACTED
from ratelab.testing import ScriptedTransport, run_virtual

matplotlib.use("Agg")
CLIENTS = ["aiohttp", "httpx"]


async def my_aiohttp_request(ctx: Any) -> Any:
    async with ctx.client.get(ctx.url, headers=ctx.headers) as r:
        await r.read()
        return r


async def my_httpx_request(ctx: Any) -> Any:
    return await ctx.client.get(ctx.url, headers=ctx.headers)


SEEN: list[dict[str, Any]] = []


async def recording_request(ctx: Any) -> Any:
    SEEN.append({"endpoint": ctx.endpoint, "method": ctx.method, "id": ctx.request_id,
                 "attempt": ctx.attempt, "headers": dict(ctx.headers)})  # fmt: skip
    return await my_aiohttp_request(ctx)


async def failing_request(ctx: Any) -> Any:
    raise LookupError("no")


def sync_request(ctx: Any) -> Any:
    return None


FUNCS = {"aiohttp": my_aiohttp_request, "httpx": my_httpx_request}


# ----------------------------------------------------------------- A: request=fn


@pytest.mark.parametrize("client", CLIENTS)
def test_request_function_is_measured_like_a_builtin_request(fresh_server, client) -> None:
    srv = fresh_server(latency="fixed:0.05", rate_limit="5/10s", seed=1)
    exp = rl.Experiment(target=srv, requests=8, workers=4, client=client,
                        request=FUNCS[client], strategy=rl.ConnectionLimit(1))  # fmt: skip
    r = rl.run(exp, progress=False)
    df = r.df
    assert r.meta["transport"] == f"{client}+function"
    assert sorted(df.status.tolist()) == [200] * 5 + [429] * 3
    assert (df.bytes[df.status == 200] > 100).all()  # the echo body, read by the function
    # stamped inside the function's call: headers arrive after sending, before done
    assert df.headers_s.notna().all()
    assert (df.sent_s <= df.headers_s).all() and (df.headers_s <= df.done_s).all()
    # one connection, four workers: the pool made some wait, and the wait was stamped
    waited = df.pool_queued_s.notna()
    assert waited.sum() >= 3 and (df.sent_s[waited] == df.pool_acquired_s[waited]).all()
    # the join id went out: the server's log has every attempt
    assert len(r.server_log) == 8 and set(r.server_log.status) == {200, 429}
    assert set(r.headers.name) >= {"ratelimit", "ratelimit-policy", "retry-after"}


def test_context_carries_the_attempt_and_ratelab_headers(server) -> None:
    SEEN.clear()
    exp = rl.Experiment(target=server, requests=3, workers=1, endpoints="/anything",
                        request=recording_request, headers={"X-Mine": "1"})  # fmt: skip
    r = rl.run(exp, progress=False)
    assert [s["id"] for s in SEEN] == [0, 1, 2] and {s["attempt"] for s in SEEN} == {1}
    assert {s["endpoint"] for s in SEEN} == {"/anything"} and {s["method"] for s in SEEN} == {"GET"}
    h = SEEN[0]["headers"]
    assert h["User-Agent"].startswith("ratelab/") and h["X-Mine"] == "1"
    assert h["X-Ratelab-Id"] == f"{r.meta['run']}-0-1"


def test_a_raising_function_is_an_error_row(server) -> None:
    exp = rl.Experiment(target=server, requests=3, request=failing_request)
    df = rl.run(exp, progress=False).df
    assert df.error.astype(str).tolist() == ["LookupError"] * 3 and (df.status == 0).all()


def test_request_must_be_async_and_is_stored_by_reference() -> None:
    with pytest.raises(ConfigError, match="async def fn") as e:
        rl.Experiment(target="http://127.0.0.1:9", request=sync_request)
    assert e.value.parameter == "request"
    exp = rl.Experiment(target="http://127.0.0.1:9", request=my_aiohttp_request)
    d = exp.to_dict()
    assert d["request"] == f"{__name__}:my_aiohttp_request"
    assert rl.Experiment.from_dict(d) == exp and pickle.loads(pickle.dumps(exp)) == exp
    assert rl.Experiment.from_dict(json.loads(json.dumps(d))).request is my_aiohttp_request


def test_a_lambda_runs_here_but_is_recorded_as_not_reimportable(server, tmp_path) -> None:
    async def local(ctx: Any) -> Any:  # a closure: not importable
        return await my_aiohttp_request(ctx)

    exp = rl.Experiment(target=server, requests=2, request=local)
    r = rl.run(exp, progress=False)
    assert (r.df.status == 200).all()
    d = exp.to_dict()
    assert d["request"].startswith(NOT_IMPORTABLE) and "local" in d["request"]
    loaded = rl.load(r.save(tmp_path / "r.parquet")).experiment
    with pytest.raises(ConfigError, match="not re-importable") as e:
        rl.run(loaded, progress=False)
    assert e.value.parameter == "request"
    with pytest.raises(ConfigError, match="processes > 1") as e:
        rl.Experiment(target=server, request=local, processes=2)
    with pytest.raises(ConfigError, match="cannot be imported"):
        rl.Experiment.from_dict({**exp.to_dict(), "request": "nosuchmodule_x:fn"})


# ----------------------------------------------------------------- B: real requests


def _echo_server(seen: list[dict[str, Any]]) -> Any:
    async def handle(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path": request.path,
                     "headers": dict(request.headers), "body": await request.read()})  # fmt: skip
        return web.Response(body=b"x" * 10)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _run_against_echo(exp_kwargs: dict[str, Any], seen: list[dict[str, Any]]) -> Any:
    runner = web.AppRunner(_echo_server(seen))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        exp = rl.Experiment(target=f"http://127.0.0.1:{port}", **exp_kwargs)
        return await rl.arun(exp, progress=False)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("client", CLIENTS)
def test_headers_body_auth_and_endpoint_overrides_are_sent(client) -> None:
    seen: list[dict[str, Any]] = []
    r = asyncio.run(_run_against_echo({
        "client": client, "requests": 20, "workers": 2, "seed": 3,
        "headers": {"X-Api-Key": "k-123", "X-Plain": "p"}, "auth": ("user", "pw"),
        "endpoints": {"/post": {"weight": 1, "method": "POST", "json": {"a": [1, 2]},
                                "headers": {"X-Plain": "endpoint"}},
                      "/form": {"weight": 1, "method": "PUT", "data": {"f": "v"}},
                      "/get": 1},
    }, seen))  # fmt: skip
    assert (r.df.status == 200).all() and (r.df.bytes == 10).all()
    by_path = {s["path"]: s for s in seen if not s["path"].startswith("/_ratelab")}
    assert set(by_path) == {"/post", "/form", "/get"}
    post, form, get = by_path["/post"], by_path["/form"], by_path["/get"]
    assert post["method"] == "POST" and json.loads(post["body"]) == {"a": [1, 2]}
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["X-Plain"] == "endpoint" and get["headers"]["X-Plain"] == "p"
    assert form["method"] == "PUT" and form["body"] == b"f=v"
    assert get["method"] == "GET" and get["body"] == b""
    for s in by_path.values():
        assert s["headers"]["X-Api-Key"] == "k-123"
        assert s["headers"]["Authorization"] == "Basic dXNlcjpwdw=="  # user:pw
        assert "X-Ratelab-Id" in s["headers"]
    methods = dict(zip(r.df.endpoint.astype(str), r.df.method.astype(str), strict=True))
    assert methods == {"/post": "POST", "/form": "PUT", "/get": "GET"}


def test_secrets_never_reach_repr_dicts_or_files(tmp_path) -> None:
    secret = "s3cr3t-value"
    exp = rl.Experiment(
        target="http://127.0.0.1:9", requests=0, auth=("me", secret),
        headers={"Authorization": f"Bearer {secret}", "X-Service-Token": secret, "A": "b"},
        endpoints={"/x": {"method": "POST", "headers": {"OpenAI-Secret": secret}, "data": "d"}},
    )  # fmt: skip
    assert secret not in repr(exp) and secret not in json.dumps(exp.to_dict())
    assert exp.to_dict()["headers"] == {
        "Authorization": REDACTED, "X-Service-Token": REDACTED, "A": "b"
    }  # fmt: skip
    assert exp.to_dict()["auth"] == REDACTED
    r = rl.run(exp, progress=False)
    path = r.save(tmp_path / "r.parquet")
    assert secret.encode() not in path.read_bytes()
    loaded = rl.load(path).experiment
    assert loaded.headers["A"] == "b"
    # the unredacted form (for child processes) round-trips exactly
    assert rl.Experiment.from_dict(exp.to_dict(redact=False)) == exp
    with pytest.raises(ConfigError, match="supply the secret") as e:
        rl.run(loaded.replace(auth=("me", secret)), progress=False)
    assert e.value.parameter == "headers['Authorization']"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"headers": {"A": 1}}, "headers['A']"),
        ({"headers": ["A"]}, "headers"),
        ({"json": {"a": 1}}, "json"),  # with GET
        ({"method": "POST", "json": {"a": 1}, "data": "x"}, "json"),
        ({"method": "POST", "json": {"a": {1, 2}}}, "json"),
        ({"endpoints": {"/p": {"json": {}, "method": "HEAD"}}}, "endpoints['/p'].json"),
        ({"endpoints": {"/p": {"body": 1}}}, "endpoints['/p'].body"),
        ({"auth": "user:pw"}, "auth"),
        ({"record_headers": [3]}, "record_headers"),
    ],
)
def test_bad_request_options_name_the_parameter(kwargs, parameter) -> None:
    with pytest.raises(ConfigError) as e:
        rl.Experiment(target="http://127.0.0.1:9", **kwargs)
    assert e.value.parameter == parameter
    assert "pw" not in str(e.value)


# ----------------------------------------------------------------- C: headers recorded


@pytest.mark.parametrize("client", CLIENTS)
def test_rate_limit_headers_are_recorded_saved_and_plotted(fresh_server, client, tmp_path):
    srv = fresh_server(rate_limit="4/10s", seed=1, headers="ietf-06")  # one count per field
    exp = rl.Experiment(target=srv, requests=6, workers=1, client=client,
                        record_headers=["Content-Type"])  # fmt: skip
    r = rl.run(exp, progress=False)
    h = r.headers
    assert list(h.columns) == ["request_id", "attempt", "name", "value"]
    remaining = h[h.name == "ratelimit-remaining"].set_index("request_id").value
    assert remaining.tolist() == ["3", "2", "1", "0", "0", "0"]
    assert set(h[h.name == "retry-after"].request_id) == {4, 5}  # only on the 429s
    assert (h[h.name == "content-type"].value == "application/json; charset=utf-8").sum() >= 4
    loaded = rl.load(r.save(tmp_path / "r.parquet"))
    pd.testing.assert_frame_equal(loaded.headers, h, check_categorical=False)
    ax = rl.plot_headers(loaded, "remaining")
    (line,) = ax.get_lines()
    assert line.get_label() == "ratelimit-remaining"
    assert line.get_ydata().tolist() == [3, 2, 1, 0, 0, 0]


def test_no_headers_means_an_empty_frame_and_nothing_saved(server, tmp_path) -> None:
    r = rl.run(rl.Experiment(target=server, requests=3), progress=False)
    assert r.headers.empty and list(r.headers.columns) == ["request_id", "attempt", "name",
                                                            "value"]  # fmt: skip
    path = r.save(tmp_path / "r.parquet")
    import pyarrow.parquet as pq

    assert HEADERS_KEY not in pq.ParquetFile(path).schema_arrow.metadata
    assert rl.load(path).headers.empty


def test_header_names_match_every_family() -> None:
    from ratelab.client.transports.base import HeaderNames
    from ratelab.records.store import RecordStore

    store = RecordStore(1, endpoints=["/"], methods=["GET"])
    names = HeaderNames(["X-Mine"])
    names.record(store, 0, {"Content-Type": "a", "Date": "b"})
    assert store.header_rows == []
    names.record(store, 0, {
        "RateLimit": '"d";r=5;t=3', "RateLimit-Policy": '"d";q=10;w=60', "Retry-After": "3",
        "X-RateLimit-Remaining": "1", "x-ratelimit-remaining-tokens": "9",
        "anthropic-ratelimit-requests-remaining": "7", "X-Mine": "m", "Server": "s",
    })  # fmt: skip
    assert [n for _, n, _ in store.header_rows] == [
        "ratelimit", "ratelimit-policy", "retry-after", "x-ratelimit-remaining",
        "x-ratelimit-remaining-tokens", "anthropic-ratelimit-requests-remaining", "x-mine",
    ]  # fmt: skip


def test_headers_merge_across_processes(fresh_server) -> None:
    srv = fresh_server(rate_limit="100/10s", seed=1, headers="ietf-06")
    r = rl.run(rl.Experiment(target=srv, requests=6, processes=2), progress=False)
    rem = r.headers[r.headers.name == "ratelimit-remaining"]
    assert sorted(rem.request_id.tolist()) == list(range(6))
    assert sorted(int(v) for v in rem.value) == list(range(94, 100))


# ----------------------------------------------------------------- D: never got a connection


def test_a_pool_wait_that_never_ends_is_not_a_latency_virtual() -> None:
    exp = rl.Experiment(target="http://127.0.0.1:9", requests=4, workers=4, timeout_s=1.0,
                        strategy=rl.ConnectionLimit(1))  # fmt: skip
    tr = ScriptedTransport(latency_s=0.4)
    store, _ = run_virtual(Engine(exp, base_url=exp.target, transport=tr).run())
    df = store.to_frame()
    # request 0: 0-0.4; 1: waits, 0.4-0.8; 2: waits, 0.8, then times out at 1.0 (sent);
    # 3: waits from 0 and never gets the connection: times out at 1.0, never sent
    assert df.status.tolist() == [200, 200, 0, 0]
    assert df.error.astype(str).tolist()[2:] == ["TimeoutError"] * 2
    np.testing.assert_allclose(df.sent_s[:3], [0.0, 0.4, 0.8], atol=1e-9)
    assert np.isnan(df.sent_s[3]) and np.isnan(df.pool_acquired_s[3])
    assert df.pool_queued_s[3] == pytest.approx(0.0, abs=1e-9) and df.done_s[3] == pytest.approx(
        1.0, abs=1e-9
    )
    latency = df.done_s - df.sent_s
    np.testing.assert_allclose(latency[:3], [0.4, 0.4, 0.2], atol=1e-9)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_pool_wait_that_never_ends_is_not_a_latency_real(fresh_server, client) -> None:
    srv = fresh_server(latency="fixed:0.4", seed=1)
    exp = rl.Experiment(target=srv, requests=6, workers=6, timeout_s=1.0, client=client,
                        strategy=rl.ConnectionLimit(1))  # fmt: skip
    df = rl.run(exp, progress=False).df
    timed_out = df.error.astype(str) == "TimeoutError"
    assert timed_out.sum() >= 3  # one connection, 0.4 s each: at most 3 answered within 1 s
    never = df.pool_queued_s.notna() & df.pool_acquired_s.isna()
    # those still queued for the connection at their timeout were never sent (on a loaded
    # machine httpx may reach the pool late, so fewer than 3 of them need have queued)
    assert never.sum() >= 1
    assert df.sent_s[never].isna().all() and timed_out[never].all()
    assert df.sent_s[~timed_out].notna().all()


# ----------------------------------------------------------------- E: streamed bodies


@pytest.mark.parametrize("client", CLIENTS)
def test_big_bodies_are_counted_exactly(server, client) -> None:
    n = 3_000_000
    r = rl.run(rl.Experiment(target=server, endpoints=f"/bytes/{n}", requests=2,
                             client=client), progress=False)  # fmt: skip
    assert (r.df.status == 200).all() and (r.df.bytes == n).all()


def test_aiohttp_never_reads_the_whole_body(server, monkeypatch) -> None:
    import aiohttp

    def refuse(self: Any) -> Any:
        raise AssertionError("read() holds the whole body")

    monkeypatch.setattr(aiohttp.ClientResponse, "read", refuse)
    r = rl.run(rl.Experiment(target=server, endpoints="/bytes/100000", requests=2),
               progress=False)  # fmt: skip
    assert (r.df.bytes == 100000).all() and r.df.error.isna().all()
