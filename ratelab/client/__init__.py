"""Running an Experiment: the engine and its guards, the transports that send attempts
(aiohttp by default), the runner (scripts and notebooks), processes, sweeps, loops, the
Redis-shared limit, and the server log a run asks its target for."""
