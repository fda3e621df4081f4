"""Every transport sends a request's cost in ``X-Ratelab-Cost`` (issue 14 item 1), checked
against a real server on 127.0.0.1 that records what it received; and the guards see the
real responses' headers (``rl.HeaderPacing`` pauses after a real 429)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

import ratelab as rl
from ratelab.protocol.quota import COST_HEADER


class _RecordingServer:
    """An aiohttp app on its own thread and loop: answers 200 (429 with Retry-After for
    ``/refuse``) and records each request's ``X-Ratelab-Id`` and ``X-Ratelab-Cost``."""

    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen[request.headers["X-Ratelab-Id"]] = request.headers.get(COST_HEADER)
        if request.path == "/refuse":
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(text="ok")

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __enter__(self) -> _RecordingServer:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def server() -> Iterator[_RecordingServer]:
    with _RecordingServer() as s:
        yield s


async def _aiohttp_fn(ctx: Any) -> Any:
    async with ctx.client.get(ctx.url, headers=ctx.headers) as r:
        await r.read()
        return r


@pytest.mark.parametrize(
    "client", ["aiohttp", "httpx", "aiohttp+function"], ids=lambda c: c.replace("+", "_")
)
def test_every_transport_sends_each_requests_cost(server: _RecordingServer, client: str) -> None:
    kind, _, fn = client.partition("+")
    exp = rl.Experiment(target=server.url, requests=12, workers=3, client=kind,
                        cost=rl.Uniform(200, 2000), seed=5,
                        request=_aiohttp_fn if fn else None)  # fmt: skip
    res = rl.run(exp, progress=False)
    df = res.df
    assert (df.status == 200).all() and len(df) == 12
    run = res.meta["run"]
    sent = {rid: server.seen[f"{run}-{rid}-1"] for rid in df.request_id}
    assert sent == {r.request_id: str(int(r.cost)) for r in df.itertuples()}
    assert len(set(sent.values())) > 6  # one cost per request, drawn
    # without a cost: no header at all
    plain = rl.run(exp.replace(cost=None), progress=False)
    run = plain.meta["run"]
    assert [server.seen[f"{run}-{rid}-1"] for rid in plain.df.request_id] == [None] * 12


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_header_pacing_sees_the_real_responses_headers(
    server: _RecordingServer, client: str
) -> None:
    # every request is refused with Retry-After: 1; one worker, no Retry: HeaderPacing
    # holds each next request until the previous refusal's Retry-After is over
    exp = rl.Experiment(target=server.url, endpoints="/refuse", requests=3, workers=1,
                        client=client, strategy=rl.HeaderPacing())  # fmt: skip
    df = rl.run(exp, progress=False).df.sort_values("request_id")
    assert (df.status == 429).all()
    gaps = (df.admitted_s.to_numpy()[1:] - df.done_s.to_numpy()[:-1]).tolist()
    # the real clock's timers fire late, never early: at least the second it asked for
    assert all(g >= 1.0 for g in gaps) and len(gaps) == 2
    unpaced = rl.run(exp.replace(strategy=rl.Unlimited()), progress=False).df
    assert unpaced.admitted_s.max() < 1.0  # without it, nobody waits
