"""Cost of one acquisition: SharedRateLimit (Redis round trips) vs the local RateLimit.

    python benchmarks/bench_shared_limit.py [--smoke] [--out PATH] [--acquires N] [--rounds R]

Both guards are built the way a run builds them (``strategy.build()`` inside the running
loop) with a limit so high that nothing ever waits, so what is timed is the bookkeeping:
``aiolimiter.AsyncLimiter.acquire()`` in memory for ``RateLimit``, and for
``SharedRateLimit`` one ``limits`` hit, i.e. a Lua script (EVALSHA) round trip to a local
``redis-server`` (started by ``ratelab.testing.redis.start()``, 127.0.0.1, no persistence).

* sequential: ``N`` acquires one after another, each timed with ``perf_counter_ns``; the
  figure is the median in microseconds (also p90), per round; rounds alternate the guards.
* concurrent: 50 tasks acquiring ``N`` times in all; acquires per second. SharedRateLimit
  serializes a process's acquisitions (one in flight per process), so this is ~1 / RTT.
* round trips per acquire: commands the client sent (``coredis.Redis.execute_command``
  calls, counted in this process), divided by ``N``; and the commands Redis executed
  (``INFO commandstats``, which counts the calls inside a Lua script too) per acquire.

All three ``algorithm`` choices of SharedRateLimit are measured. Without ``redis-server``
the shared lines are reported as skipped.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import default_out as _default_out
from _common import describe, headline, machine_info, parser, write_report

import ratelab as rl
from ratelab.client.shared_limit import SHARED_ALGORITHMS, SharedRateLimit
from ratelab.testing import redis as redis_server

HIGH = 10**9  # a limit nothing reaches: no acquire ever waits
CONCURRENCY = 50


def _redis_info(url: str, section: str) -> dict[str, str]:
    """``INFO <section>`` over a raw socket, as ``{field: value}``."""
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"*2\r\n$4\r\nINFO\r\n${len(section)}\r\n{section}\r\n".encode())
        data = b""
        while True:
            data += sock.recv(65536)
            head, _, rest = data.partition(b"\r\n")
            if head.startswith(b"$") and len(rest) >= int(head[1:]):
                break
    out = {}
    for line in rest.decode().splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


class _ClientCommands:
    """Counts the commands this process's coredis clients send (one round trip each)."""

    def __init__(self) -> None:
        import coredis.client.basic as basic

        self.n = 0
        self._cls = basic.Redis
        self._orig = basic.Redis.execute_command
        counter = self

        async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
            counter.n += 1
            return await counter._orig(self, *args, **kwargs)

        basic.Redis.execute_command = counting  # type: ignore[method-assign]

    def restore(self) -> None:
        self._cls.execute_command = self._orig  # type: ignore[method-assign]


def _calls(url: str) -> int:
    """Commands Redis has executed so far (INFO commandstats), not counting INFO itself."""
    total = 0
    for k, v in _redis_info(url, "commandstats").items():
        if k.startswith("cmdstat_") and k != "cmdstat_info":
            total += int(dict(p.split("=") for p in v.split(","))["calls"])
    return total


async def _sequential(
    strategy: rl.Strategy, n: int, count: Callable[[], tuple[int, int]] | None
) -> tuple[list[float], tuple[float, float]]:
    """``n`` timed acquires (µs each) on a fresh guard, after a warm-up of 50; and per
    acquire during the timed ones: (client round trips, commands Redis executed)."""
    (guard,) = strategy.build().guards
    try:
        for _ in range(50):
            await guard.acquire("/get")
        before = count() if count is not None else (0, 0)
        out = []
        clock = time.perf_counter_ns
        for _ in range(n):
            t = clock()
            await guard.acquire("/get")
            out.append((clock() - t) / 1e3)
        after = count() if count is not None else (0, 0)
        return out, ((after[0] - before[0]) / n, (after[1] - before[1]) / n)
    finally:
        aclose = getattr(guard, "aclose", None)
        if aclose is not None:
            await aclose()


async def _concurrent(strategy: rl.Strategy, n: int) -> float:
    """Acquires per second with CONCURRENCY tasks sharing ``n`` acquires."""
    (guard,) = strategy.build().guards
    left = n

    async def task() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await guard.acquire("/get")

    try:
        await guard.acquire("/get")
        t = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(CONCURRENCY)))
        return n / (time.perf_counter() - t)
    finally:
        aclose = getattr(guard, "aclose", None)
        if aclose is not None:
            await aclose()


def run(*, acquires: int, rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "benchmark": "shared_limit",
        "acquires": acquires,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
    }
    strategies: dict[str, rl.Strategy] = {"RateLimit (aiolimiter, local)": rl.RateLimit(HIGH)}
    redis = None
    if redis_server.available():
        redis = redis_server.start()
        report["redis_version"] = _redis_info(redis.url, "server").get("redis_version")
        for algo in SHARED_ALGORITHMS:
            strategies[f"SharedRateLimit ({algo})"] = SharedRateLimit(
                HIGH, redis=redis.url, key=f"bench-{algo}", algorithm=algo
            )
    else:
        report["shared_skipped"] = "redis-server is not installed (apt-get install redis-server)"
    try:
        samples: dict[str, list[list[float]]] = {name: [] for name in strategies}
        trips: dict[str, list[float]] = {name: [] for name in strategies}
        commands: dict[str, list[float]] = {name: [] for name in strategies}
        rates: dict[str, list[float]] = {name: [] for name in strategies}
        client = _ClientCommands() if redis is not None else None
        for r in range(rounds):
            order = list(strategies) if r % 2 == 0 else list(reversed(strategies))
            for name in order:
                strategy = strategies[name]
                count = None
                if isinstance(strategy, SharedRateLimit) and redis is not None:
                    url, c = redis.url, client

                    def count(url: str = url, c: Any = c) -> tuple[int, int]:
                        return c.n, _calls(url)

                times, (per_trip, per_cmd) = asyncio.run(_sequential(strategy, acquires, count))
                samples[name].append(times)
                trips[name].append(per_trip)
                commands[name].append(per_cmd)
                rates[name].append(asyncio.run(_concurrent(strategy, acquires)))
        if client is not None:
            client.restore()
    finally:
        if redis is not None:
            redis.stop()

    results = {}
    for name in strategies:
        medians = [statistics.median(s) for s in samples[name]]
        p90s = [statistics.quantiles(s, n=10)[-1] for s in samples[name]]
        results[name] = {
            "median_us": statistics.median(medians),
            "p90_us": statistics.median(p90s),
            "round_medians_us": describe(medians),
            "concurrent_acquires_per_s": statistics.median(rates[name]),
            "round_trips_per_acquire": statistics.median(trips[name]),
            "redis_commands_per_acquire": statistics.median(commands[name]),
        }
    report["results"] = results
    local = results["RateLimit (aiolimiter, local)"]["median_us"]
    rows = [headline("RateLimit acquire, median µs", round(local, 2))]
    for name, entry in results.items():
        if name.startswith("SharedRateLimit"):
            entry["ratio_to_local"] = entry["median_us"] / local
            rows.append(headline(f"{name} acquire, median µs", round(entry["median_us"], 1)))
    moving = results.get("SharedRateLimit (moving_window)")
    if moving is not None:
        report["ratio_shared_to_local"] = moving["ratio_to_local"]
        rows.append(
            headline("SharedRateLimit / RateLimit (median)", round(moving["ratio_to_local"]))
        )
    report["headline"] = rows
    report["machine"] = machine_info()
    return report


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--acquires", type=int, default=None, help="acquires per round and guard")
    p.add_argument("--rounds", type=int, default=None, help="rounds (guards alternate)")
    args = p.parse_args(argv)
    acquires = args.acquires or (200 if args.smoke else 5000)
    rounds = args.rounds or (1 if args.smoke else 5)
    report = run(acquires=acquires, rounds=rounds)
    report["smoke"] = args.smoke
    for name, entry in report["results"].items():
        print(
            f"{name:<42} median {entry['median_us']:9.2f} µs  p90 {entry['p90_us']:9.2f} µs  "
            f"{entry['concurrent_acquires_per_s']:10.0f} acquires/s ({CONCURRENCY} tasks)  "
            f"{entry['round_trips_per_acquire']:.2f} round trips "
            f"({entry['redis_commands_per_acquire']:.0f} Redis commands)/acquire"
        )
    if "shared_skipped" in report:
        print(f"shared: skipped ({report['shared_skipped']})")
    write_report(report, _default_out("shared_limit", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
