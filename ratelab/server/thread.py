"""The LocalServer's thread: bind, serve on the thread's own event loop, clean up.

A LocalServer starts :func:`serve_on_thread` on a daemon thread; stopping the state's loop
(``state.loop.stop``, from any thread) ends it: stalled connections are dropped, in-flight
requests get :data:`~ratelab.server.state.SHUTDOWN_TIMEOUT_S`, then every task is cancelled
and the loop is closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from aiohttp import web

from ratelab.server.app import make_app
from ratelab.server.decide import Policy
from ratelab.server.state import SHUTDOWN_TIMEOUT_S, ServerState

__all__ = ["serve_on_thread"]


async def _hang_up_stalls(runner: web.AppRunner, policy: Policy) -> None:
    """Stop listening, then drop every stalled connection. A stall never ends by itself, so
    it would otherwise hold stop() for the whole shutdown grace period."""
    for site in list(runner.sites):
        await site.stop()
    policy.closing = True
    for transport in list(policy.stalled):
        transport.abort()  # type: ignore[attr-defined]


def serve_on_thread(state: ServerState, ready: concurrent.futures.Future[int]) -> None:
    """Bind, report the port through ``ready``, serve until the loop is stopped, clean up."""
    loop = state.loop
    asyncio.set_event_loop(loop)
    # handler_cancellation: a client that disconnects cancels its handler (logged as 499)
    runner = web.AppRunner(
        make_app(state),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    try:
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, state.host, state.port).start())
            ready.set_result(runner.addresses[0][1])
        except BaseException as exc:
            ready.set_exception(exc)
        else:
            loop.run_forever()
        if state.policy is not None:
            loop.run_until_complete(_hang_up_stalls(runner, state.policy))
        loop.run_until_complete(runner.cleanup())
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
