"""Transports: how the engine sends one attempt (``base``: the contract; ``aiohttp_transport``:
the default, over real sockets; :mod:`ratelab.testing.transport`: none, on a virtual clock)."""
