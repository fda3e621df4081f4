"""What one LocalServer run's thread works with: :class:`ServerState`, the app key under
which its handlers find it, and the thread's start and stop time limits."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import web

from ratelab.server.log import RequestLog

if TYPE_CHECKING:
    from ratelab.server.decide import Policy, ServiceLatency

__all__ = ["SHUTDOWN_TIMEOUT_S", "STARTUP_TIMEOUT_S", "STATE", "ServerState"]

STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 1.0  # on stop(), in-flight requests get this long, then are cancelled


class ServerState:
    """Everything the server thread uses. It never references the LocalServer, so a
    LocalServer that is garbage-collected can be finalized, which stops this thread."""

    def __init__(
        self,
        host: str,
        port: int,
        name: str | None,
        latency: ServiceLatency | None,
        data_rng: np.random.Generator,
        log: RequestLog,
        policy: Policy | None = None,
    ) -> None:
        self.host, self.port, self.name = host, port, name
        self.latency, self.data_rng, self.log = latency, data_rng, log
        self.policy = policy
        self.loop = asyncio.new_event_loop()
        self.thread: threading.Thread | None = None
        self.stopped = False
        self.stop_lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return not self.stopped and self.thread is not None and self.thread.is_alive()


#: Where the app keeps its ServerState (``request.app[STATE]``).
STATE = web.AppKey("ratelab_state", ServerState)
