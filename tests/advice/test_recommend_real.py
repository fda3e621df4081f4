"""The recommendation, run for real against the LocalServer it was made for (127.0.0.1).

What it promises: no 429 (none were allowed) and at least 95% of the limit's throughput
over the run's steady part (the second half of the send span), as long as the machine
keeps the run's timers within ``slack_s`` (50 ms) of their time. The margin recommend keeps
(2 s windows, 50 ms of slack: 2.4%) is what lets this hold on a loaded 2-core machine; the
remaining 2.6% is the tolerance.

A machine can break that premise: one that stops the whole process for longer (CPU
steal on a shared host, a scheduler that runs others first) delays requests that then go
out together with later ones, and a server's 2 s window sees 31. Measured by stopping the
process (SIGSTOP) every ~1 s (sliding_window): stops of 40-45 ms, no 429 in 10 runs; of
55 ms, 429s in 2 runs of 4; of 70 ms, in 5 of 7. With every core busy (two or six
CPU-bound processes on the 2 cores) the process never stopped for more than 35 ms, and the
test held. So the run is watched: a thread that wakes every 5 ms records
the longest time the process did not run. Within the slack, the promise is asserted in
full; beyond it, only what holds on any machine, and the test says it was skipped and why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import ratelab as rl
from ratelab.advice.recommend import steady_throughput_per_s

SERVERS = {
    "fixed_window": {"rate_limit": rl.ServerRateLimit(30, 2.0)},
    "sliding_window": {"rate_limit": rl.ServerRateLimit(30, 2.0, algorithm="sliding_window")},
    "token_bucket": {"rate_limit": rl.ServerRateLimit(30, 2.0, algorithm="token_bucket")},
    "gcra": {"rate_limit": rl.ServerRateLimit(30, 2.0, algorithm="gcra")},
    "openai": {"profile": rl.profiles.openai(rpm=600, tpm=30_000)},  # tokens bind: 5/s
    "anthropic": {"profile": rl.profiles.anthropic(rpm=300, input_tpm=60_000, output_tpm=60_000)},
    "github": {
        "profile": rl.profiles.github(per_hour=18_000, concurrent=4, points_per_minute=1200)
    },
}
COSTS = {"openai": 100}


SLACK_S = 0.05  # recommend's default slack_s: how late its margin lets the timers be


@contextmanager
def _longest_stall_s() -> Iterator[list[float]]:
    """``[s]``: the longest time this process did not run while the block ran, as seen by
    a thread that wakes every 5 ms (a stall plus up to one wake-up: never less than the
    stall). Measured with all cores busy: up to 21 ms (2 busy processes), 34 ms (6)."""
    longest = [0.0]
    stop = threading.Event()

    def watch() -> None:
        last = time.monotonic()
        while not stop.wait(0.005):
            now = time.monotonic()
            longest[0] = max(longest[0], now - last)
            last = now

    watcher = threading.Thread(target=watch, name="stall-watch", daemon=True)
    watcher.start()
    try:
        yield longest
    finally:
        stop.set()
        watcher.join()


@pytest.mark.parametrize("name", list(SERVERS))
def test_the_recommendation_meets_the_objective_for_real(name: str) -> None:
    with rl.LocalServer(latency=rl.Uniform(0.01, 0.03), seed=1, **SERVERS[name]) as server:
        workload = rl.Experiment(
            target=server.url, requests=90, workers=8, seed=1, cost=COSTS.get(name)
        )
        rec = rl.recommend(server, workload)
        with _longest_stall_s() as stall:
            result = rl.run(rec.experiment, progress=False)
    df = result.df
    # on any machine: every request ran, and the server only ever answered or refused
    assert sorted(df["request_id"].unique()) == list(range(90))
    assert set(df["status"]) <= {200, 429}, df["status"].value_counts()
    if stall[0] > SLACK_S:
        pytest.skip(
            f"the machine stopped this process for {stall[0] * 1000:.0f} ms, more than the "
            f"{SLACK_S * 1000:.0f} ms of lateness the recommendation's margin is for "
            f"({int((df['status'] == 429).sum())} 429s)"
        )
    assert len(df) == 90 and (df["status"] == 429).sum() == 0, df["status"].value_counts()
    steady = steady_throughput_per_s(result)
    assert steady >= 0.95 * rec.limit_per_s, (steady, rec.limit_per_s, rec.strategy)
