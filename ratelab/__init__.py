"""ratelab: see how async HTTP rate limiting really behaves.

import ratelab as rl

with rl.LocalServer(latency=rl.Uniform(0.05, 0.2)) as server:
    exp = rl.Experiment(target=server.url, requests=200, workers=10,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(10), seed=1)
    result = rl.run(exp)      # or: result = await rl.arun(exp)
    result.df                 # one row per request attempt
"""

from __future__ import annotations

from . import redis_server
from .analysis import WindowStats, concurrency, latency, phase_means, summary, throughput, windows
from .config import Arrivals, Constant, Experiment, Poisson
from .distributions import Distribution, Exponential, Fixed, LogNormal, Uniform
from .errors import ConfigError, RatelabError, ResultFileError
from .multiprocess import run_processes
from .notebook import allow_asyncio_run
from .plots import (
    compare,
    dashboard,
    plot_concurrency,
    plot_latency,
    plot_throughput,
    plot_timeline,
    plot_waits,
)
from .policies import Faults, ServerRateLimit
from .result import Result, load
from .runner import arun, run
from .server import LocalServer, serve
from .shared import RedisUnavailableError, SharedRateLimit
from .strategies import (
    Adaptive,
    Concurrency,
    ConnectionLimit,
    RateLimit,
    Retry,
    SlidingWindow,
    Strategy,
    TokenBucket,
    Unlimited,
)
from .sweep import SweepResult, plot_sweep, sweep

__version__ = "0.1.0"

__all__ = [
    "Adaptive",
    "Arrivals",
    "Concurrency",
    "ConfigError",
    "ConnectionLimit",
    "Constant",
    "Distribution",
    "Experiment",
    "Exponential",
    "Faults",
    "Fixed",
    "LocalServer",
    "LogNormal",
    "Poisson",
    "RateLimit",
    "RatelabError",
    "RedisUnavailableError",
    "Result",
    "ResultFileError",
    "Retry",
    "ServerRateLimit",
    "SharedRateLimit",
    "SlidingWindow",
    "Strategy",
    "SweepResult",
    "TokenBucket",
    "Uniform",
    "Unlimited",
    "WindowStats",
    "__version__",
    "allow_asyncio_run",
    "arun",
    "compare",
    "concurrency",
    "dashboard",
    "latency",
    "load",
    "phase_means",
    "plot_concurrency",
    "plot_latency",
    "plot_sweep",
    "plot_throughput",
    "plot_timeline",
    "plot_waits",
    "redis_server",
    "run",
    "run_processes",
    "serve",
    "summary",
    "sweep",
    "throughput",
    "windows",
]
