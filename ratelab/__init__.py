"""ratelab: see how async HTTP rate limiting really behaves.

import ratelab as rl

with rl.LocalServer(latency=rl.Uniform(0.05, 0.2)) as server:
    exp = rl.Experiment(target=server.url, requests=200, workers=10,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(10), seed=1)
    result = rl.run(exp)      # or: result = await rl.arun(exp)
    result.df                 # one row per request attempt

The front door is lazy (PEP 562): ``import ratelab`` loads none of pandas, pyarrow,
matplotlib or aiohttp; each name below is imported from its layer on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module (under ratelab.) that defines it
_EXPORTS: dict[str, str] = {
    # experiment: what to run (plain data)
    "Experiment": "experiment.experiment",
    "Arrivals": "experiment.arrivals",
    "Constant": "experiment.arrivals",
    "Poisson": "experiment.arrivals",
    "Distribution": "experiment.distributions",
    "Exponential": "experiment.distributions",
    "Fixed": "experiment.distributions",
    "LogNormal": "experiment.distributions",
    "Uniform": "experiment.distributions",
    "Strategy": "experiment.strategies",
    "Unlimited": "experiment.strategies",
    "RateLimit": "experiment.strategies",
    "ConnectionLimit": "experiment.strategies",
    "Concurrency": "experiment.strategies",
    "TokenBucket": "experiment.strategies",
    "SlidingWindow": "experiment.strategies",
    "Adaptive": "experiment.strategies",
    "Retry": "experiment.strategies",
    "AllOf": "experiment.strategies",
    "HeaderPacing": "experiment.strategies",
    # client: running it
    "Guard": "client.guards",
    "run": "client.runner",
    "arun": "client.runner",
    "run_processes": "client.processes",
    "sweep": "client.sweep",
    "SharedRateLimit": "client.shared_limit",
    "RedisUnavailableError": "client.shared_limit",
    # simulation: the same run on a virtual clock, against a simulated server
    "simulate": "simulation.runner",
    "asimulate": "simulation.runner",
    # advice: which numbers to use
    "recommend": "advice.recommend",
    "Recommendation": "advice.recommend",
    # explore: sliders over an experiment, re-simulated on every change
    "explore": "explorer.panel",
    "Explorer": "explorer.panel",
    # advice: which numbers? probe a server's limit
    "probe": "advice.probe",
    "Probe": "advice.probe",
    # server: the local target
    "LocalServer": "server.local",
    "serve": "server.local",
    "ServerRateLimit": "server.policies",
    "Faults": "server.policies",
    # analysis: reading a Result
    "Result": "analysis.result",
    "load": "analysis.result",
    "SweepResult": "analysis.sweeps",
    "plot_sweep": "analysis.sweeps",
    "WindowStats": "analysis.metrics",
    "concurrency": "analysis.metrics",
    "latency": "analysis.metrics",
    "phase_means": "analysis.metrics",
    "summary": "analysis.metrics",
    "throughput": "analysis.metrics",
    "windows": "analysis.metrics",
    "compare": "analysis.plots",
    "dashboard": "analysis.plots",
    "plot_concurrency": "analysis.plots",
    "header_values": "analysis.headers",
    "plot_headers": "analysis.headers",
    "plot_latency": "analysis.plots",
    "plot_state": "analysis.state_plots",
    "plot_throughput": "analysis.plots",
    "plot_timeline": "analysis.plots",
    "plot_waits": "analysis.plots",
    # errors and helpers
    "RatelabError": "errors",
    "RatelabWarning": "errors",
    "ConfigError": "errors",
    "ResultFileError": "errors",
    "RunError": "errors",
    "allow_asyncio_run": "notebook",
}
#: public module -> where it lives
_MODULES: dict[str, str] = {
    "profiles": "server.profiles",
    "redis_server": "testing.redis",
    "testing": "testing",
}

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])


def __getattr__(name: str) -> Any:
    where = _EXPORTS.get(name)
    if where is not None:
        value = getattr(importlib.import_module(f"ratelab.{where}"), name)
    elif name in _MODULES:
        value = importlib.import_module(f"ratelab.{_MODULES[name]}")
    else:
        raise AttributeError(f"module 'ratelab' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see: the eager imports
    from ratelab import testing
    from ratelab.advice.probe import Probe, probe
    from ratelab.advice.recommend import Recommendation, recommend
    from ratelab.analysis.headers import header_values, plot_headers
    from ratelab.analysis.metrics import (
        WindowStats,
        concurrency,
        latency,
        phase_means,
        summary,
        throughput,
        windows,
    )
    from ratelab.analysis.plots import (
        compare,
        dashboard,
        plot_concurrency,
        plot_latency,
        plot_throughput,
        plot_timeline,
        plot_waits,
    )
    from ratelab.analysis.result import Result, load
    from ratelab.analysis.state_plots import plot_state
    from ratelab.analysis.sweeps import SweepResult, plot_sweep
    from ratelab.client.guards import Guard
    from ratelab.client.processes import run_processes
    from ratelab.client.runner import arun, run
    from ratelab.client.shared_limit import RedisUnavailableError, SharedRateLimit
    from ratelab.client.sweep import sweep
    from ratelab.errors import (
        ConfigError,
        RatelabError,
        RatelabWarning,
        ResultFileError,
        RunError,
    )
    from ratelab.experiment.arrivals import Arrivals, Constant, Poisson
    from ratelab.experiment.distributions import (
        Distribution,
        Exponential,
        Fixed,
        LogNormal,
        Uniform,
    )
    from ratelab.experiment.experiment import Experiment
    from ratelab.experiment.strategies import (
        Adaptive,
        AllOf,
        Concurrency,
        ConnectionLimit,
        HeaderPacing,
        RateLimit,
        Retry,
        SlidingWindow,
        Strategy,
        TokenBucket,
        Unlimited,
    )
    from ratelab.explorer.panel import Explorer, explore
    from ratelab.notebook import allow_asyncio_run
    from ratelab.server import profiles
    from ratelab.server.local import LocalServer, serve
    from ratelab.server.policies import Faults, ServerRateLimit
    from ratelab.simulation.runner import asimulate, simulate
    from ratelab.testing import redis as redis_server
