"""A minimal aiohttp.web target: ``GET /get`` returns a small fixed JSON. No middleware, no log.

    python benchmarks/_minimal_server.py [--port 0]

Prints ``minimal server on http://127.0.0.1:PORT`` once listening; stops on Ctrl-C/SIGTERM.
The benchmarks use it beside ``ratelab.server.local.serve`` to tell client cost from server cost.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

BODY = b'{"args": {}, "url": "http://127.0.0.1/get", "ok": true}'


async def _get(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/get", _get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"minimal server on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    asyncio.run(main(p.parse_args().port))
