"""Virtual time: ``rl.simulate`` runs the real engine and guards on a virtual clock against a
simulated server (a LocalServer's configuration, never started), with no sockets.

- :mod:`~ratelab.simulation.pool`: a connection pool with aiohttp's ``TCPConnector`` semantics;
- :mod:`~ratelab.simulation.server`: the simulated server, a Transport;
- :mod:`~ratelab.simulation.runner`: ``simulate`` and ``asimulate``.
"""
