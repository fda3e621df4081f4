"""Short pasteable code for a configuration: ``Recommendation.to_snippet(library)``.

    print(rec.to_snippet("aiohttp"))    # aiohttp + aiolimiter + asyncio
    print(rec.to_snippet("httpx"))      # httpx + aiolimiter + asyncio
    print(rec.to_snippet("aiometer"))   # httpx + aiometer (max_per_second, max_at_once)

A snippet is the heart of :meth:`Experiment.to_script` without the recording: the gates
(``TokenBucket(r, burst=b)`` and ``RateLimit(m, period_s=p)`` as aiolimiter's
``AsyncLimiter(b, b / r)`` / ``AsyncLimiter(m, p)``, ``Concurrency(n)`` as a semaphore,
``ConnectionLimit(n)`` as the client's connection cap), ``Retry``'s loop honouring
``Retry-After``, and W workers over a queue of URLs. aiometer fits a rate with no burst
and a cap on requests at once; a burst, or several rates, does not fit it (a ConfigError
says so). What a few lines cannot say (``AllOf``, tokens limits, ``HeaderPacing``,
``SlidingWindow``, ``Adaptive``) is a ConfigError naming the part: use ``to_script()`` or
run the Experiment with ratelab.
"""

from __future__ import annotations

from dataclasses import dataclass

from ratelab.errors import ConfigError
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.strategies import (
    Concurrency,
    ConnectionLimit,
    RateLimit,
    Retry,
    TokenBucket,
    Unlimited,
)

__all__ = ["LIBRARIES", "to_snippet"]

LIBRARIES = ("aiohttp", "httpx", "aiometer")


@dataclass
class _Gates:
    rate: tuple[float, float] | None = None  # AsyncLimiter(max_rate, period_s)
    burst: float = 1.0
    semaphore: int | None = None
    connections: int = 0  # 0: unlimited
    attempts: int = 1
    max_backoff_s: float = 10.0


def _gates(exp: Experiment) -> _Gates:
    g = _Gates()
    for part in exp.strategy.parts:
        if isinstance(part, TokenBucket) and type(part) is TokenBucket and g.rate is None:
            g.rate, g.burst = (part.burst, part.burst / part.rate_per_s), part.burst
        elif (
            type(part) is RateLimit and part.unit == "requests" and g.rate is None
        ):  # aiolimiter's own
            g.rate, g.burst = (part.max_rate, part.period_s), part.max_rate
        elif type(part) is Concurrency and part.endpoint is None and g.semaphore is None:
            g.semaphore = part.n
        elif type(part) is ConnectionLimit:
            g.connections = min(x for x in (part.limit, part.per_host) if x) or 0
        elif type(part) is Retry:
            g.attempts, g.max_backoff_s = part.max_attempts, part.max_backoff_s
        elif type(part) is not Unlimited:
            raise ConfigError(
                "strategy", part,
                "a snippet writes one rate (RateLimit on requests or TokenBucket), one "
                "Concurrency, a ConnectionLimit and Retry; use to_script() or rl.run(...) "
                f"for {type(part).__name__}",
            )  # fmt: skip
    return g


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def to_snippet(experiment: Experiment, *, library: str = "aiohttp") -> str:
    """Pasteable code for ``experiment``'s strategy with ``library`` (see the module)."""
    if library not in LIBRARIES:
        raise ConfigError("library", library, f"must be one of {', '.join(LIBRARIES)}")
    g = _gates(experiment)
    path = next(iter(experiment.endpoints))
    url = experiment.target.rstrip("/") + path
    workers = min(experiment.workers, max(experiment.requests, 1))
    head = f"# ratelab's recommendation: {experiment.strategy!r}\n"
    if library == "aiometer":
        return head + _aiometer(g, url, workers, experiment.requests)
    http = "aiohttp" if library == "aiohttp" else "httpx"
    lines = ["import asyncio", "", f"import {http}", "from aiolimiter import AsyncLimiter", ""]
    lines.append(f"URL = {url!r}")
    if g.rate is not None:
        rate_per_s = g.rate[0] / g.rate[1]
        what = "no burst" if g.burst <= 1 else f"a burst of {_fmt(g.burst)} at the start"
        lines.append(
            f"limiter = AsyncLimiter({_fmt(g.rate[0])}, {_fmt(g.rate[1])})"
            f"  # {_fmt(rate_per_s)} requests/s, {what}"
        )
    if g.semaphore is not None:
        lines.append(f"in_flight = asyncio.Semaphore({g.semaphore})  # requests at once")
    lines.append(f"ATTEMPTS = {g.attempts}  # a 429 or 503 is retried after its Retry-After")
    lines += ["", "", "async def fetch(client, url):", "    for attempt in range(1, ATTEMPTS + 1):"]
    pad = "        "
    if g.rate is not None:
        lines.append(f"{pad}async with limiter:")
        pad += "    "
    if g.semaphore is not None:
        lines.append(f"{pad}async with in_flight:")
        pad += "    "
    if http == "aiohttp":
        lines += [
            f"{pad}async with client.get(url) as resp:",
            f"{pad}    body = await resp.read()",
            f"{pad}    status, retry_after = resp.status, resp.headers.get('Retry-After')",
        ]
    else:
        lines += [
            f"{pad}resp = await client.get(url)",
            f"{pad}body = resp.content",
            f"{pad}status, retry_after = resp.status_code, resp.headers.get('Retry-After')",
        ]
    lines += [
        "        if status not in (429, 503) or attempt == ATTEMPTS:",
        "            return status, body",
        "        try:",
        f"            wait_s = min(float(retry_after), {_fmt(g.max_backoff_s)})",
        "        except (TypeError, ValueError):  # absent, or an HTTP date",
        "            wait_s = 0.1 * 2**attempt",
        "        await asyncio.sleep(wait_s)",
        "",
        "",
        "async def main(urls, workers=" + str(workers) + "):",
        "    queue = asyncio.Queue()",
        "    for url in urls:",
        "        queue.put_nowait(url)",
        "    results = []",
    ]
    if http == "aiohttp":
        lines += [
            f"    connector = aiohttp.TCPConnector(limit={g.connections})  # 0: unlimited",
            "    async with aiohttp.ClientSession(connector=connector) as client:",
        ]
    else:
        cap = g.connections or None
        lines += [
            f"    limits = httpx.Limits(max_connections={cap})  # None: unlimited",
            "    async with httpx.AsyncClient(limits=limits) as client:",
        ]
    lines += [
        "",
        "        async def worker():",
        "            while not queue.empty():",
        "                results.append(await fetch(client, queue.get_nowait()))",
        "",
        "        await asyncio.gather(*(worker() for _ in range(workers)))",
        "    return results",
        "",
        "",
        f"results = asyncio.run(main([URL] * {experiment.requests}))",
    ]
    return head + "\n".join(lines) + "\n"


def _aiometer(g: _Gates, url: str, workers: int, requests: int) -> str:
    if g.rate is None:
        raise ConfigError(
            "library", "aiometer",
            "fits a rate (max_per_second) with a cap on requests at once (max_at_once); this "
            "strategy has no rate: use library='aiohttp' or 'httpx'",
        )  # fmt: skip
    if g.burst > 1:
        raise ConfigError(
            "library", "aiometer",
            f"spaces requests evenly (max_per_second): the recommended burst of {_fmt(g.burst)} "
            "does not fit it; use library='aiohttp' or 'httpx' (aiolimiter)",
        )  # fmt: skip
    at_once = min(x for x in (workers, g.semaphore, g.connections) if x)
    rate_per_s = g.rate[0] / g.rate[1]
    retry = ""
    if g.attempts > 1:
        retry = "    # no retry here: a 429 comes back as its status\n"
    return f"""import asyncio
import functools

import aiometer
import httpx

URL = {url!r}


async def fetch(client, url):{retry and chr(10) + retry.rstrip()}
    resp = await client.get(url)
    return resp.status_code, resp.content


async def main(urls):
    async with httpx.AsyncClient() as client:
        jobs = [functools.partial(fetch, client, url) for url in urls]
        # {_fmt(rate_per_s)} requests/s, evenly spaced; at most {at_once} at once
        return await aiometer.run_all(
            jobs, max_at_once={at_once}, max_per_second={_fmt(rate_per_s)}
        )


results = asyncio.run(main([URL] * {requests}))
"""
