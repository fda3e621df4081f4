"""Transports: how the engine sends one attempt (``base``: the contract; ``aiohttp_transport``:
the default, over real sockets; ``httpx_transport``: httpx's AsyncClient,
``Experiment(client="httpx")``; ``function_transport``: the user's ``request=fn`` around
either; :mod:`ratelab.testing.transport`: none, on a virtual clock).

:func:`transport_for` builds the transport an Experiment's ``client`` names; only the chosen
client's library is imported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ratelab.errors import ConfigError

if TYPE_CHECKING:
    from ratelab.client.transports.base import Transport

__all__ = ["check_client_installed", "transport_for"]


def check_client_installed(client: str) -> None:
    """Raise ConfigError if ``client``'s library is not installed (checked when a run starts,
    so a saved Result that used it loads anywhere)."""
    if client == "httpx" and importlib.util.find_spec("httpx") is None:
        raise ConfigError(
            "client", client, "needs the httpx package: pip install 'ratelab[httpx]' (or httpx)"
        )


def transport_for(client: str, *, request: Callable[..., Any] | None = None) -> Transport:
    """A fresh transport for an Experiment's ``client`` (``"aiohttp"`` or ``"httpx"``); with
    ``request`` (``Experiment(request=fn)``), one that awaits ``fn(ctx)`` with that
    client's session (:mod:`~ratelab.client.transports.function_transport`)."""
    if request is not None:
        from ratelab.client.transports.function_transport import FunctionTransport

        return FunctionTransport(request, transport_for(client))
    if client == "httpx":
        check_client_installed(client)
        from ratelab.client.transports.httpx_transport import HttpxTransport

        return HttpxTransport()
    if client != "aiohttp":
        raise ConfigError("client", client, "must be one of 'aiohttp', 'httpx'")
    from ratelab.client.transports.aiohttp_transport import AiohttpTransport

    return AiohttpTransport()
