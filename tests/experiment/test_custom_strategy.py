"""Your own strategy: the README's example (tests/experiment/custom_strategy.py) exactly on
the virtual clock, in a real run split across processes, through plain data and pickle;
and the Guard contract the engine keeps (acquire, release, observe, aclose)."""

from __future__ import annotations

import asyncio
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ratelab as rl
from ratelab.experiment.strategies import Strategy, as_strategy
from ratelab.testing import run_virtual
from tests.experiment import custom_strategy
from tests.experiment.custom_strategy import PerEndpointConcurrency

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Your own strategy\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_shows_this_exact_example() -> None:
    module = Path(custom_strategy.__file__).read_text(encoding="utf-8")
    example = module.split("# --- README example: begin\n")[1].split("# --- README example: end")[0]
    assert _readme_blocks()[0].strip() == example.strip()


# ------------------------------------------------------------------ the virtual clock


async def admissions(
    strategy: rl.Strategy, endpoints: list[str], service_s: float
) -> list[tuple[float, str]]:
    """One request per item of ``endpoints``, all at once, through the strategy's guards
    (built here, inside the running loop), each in flight for ``service_s``; returns
    (admission time, endpoint) in admission order."""
    guards = strategy.build().guards
    loop = asyncio.get_running_loop()
    admitted: list[tuple[float, str]] = []

    async def one(endpoint: str) -> None:
        for g in guards:
            await g.acquire(endpoint)
        admitted.append((loop.time(), endpoint))
        try:
            await asyncio.sleep(service_s)
        finally:
            for g in guards:
                g.release(endpoint)

    await asyncio.gather(*(one(e) for e in endpoints))
    for g in guards:
        await g.aclose()
    return admitted


def test_at_most_n_in_flight_to_each_endpoint_exactly() -> None:
    endpoints = ["/a"] * 5 + ["/b"] * 3
    admitted = run_virtual(admissions(PerEndpointConcurrency(2), endpoints, service_s=0.1))
    at = {e: [t for t, x in admitted if x == e] for e in ("/a", "/b")}
    # two at a time per endpoint, the next pair when the last one's 100 ms are over;
    # /b does not wait for /a
    assert at["/a"] == pytest.approx([0, 0, 0.1, 0.1, 0.2], abs=1e-9)
    assert at["/b"] == pytest.approx([0, 0, 0.1], abs=1e-9)


def test_it_combines_with_a_built_in_strategy_in_the_order_written() -> None:
    strategy = PerEndpointConcurrency(1) + rl.RateLimit(1, period_s=0.05)
    guards = run_virtual(_built(strategy))
    assert [type(g).__name__ for g in guards] == ["PerEndpointGuard", "LimiterGuard"]
    admitted = run_virtual(admissions(strategy, ["/a", "/a", "/b", "/b"], service_s=0.2))
    # /a and /b: one each in flight (200 ms); the limiter spaces all starts >= 50 ms
    assert [(round(t, 9), e) for t, e in admitted] == [
        (0.0, "/a"), (0.05, "/b"), (0.2, "/a"), (0.25, "/b"),
    ]  # fmt: skip


async def _built(strategy: rl.Strategy) -> tuple[rl.Guard, ...]:
    return strategy.build().guards


# ------------------------------------------------------------------ a real run


def _peak_in_flight(df: pd.DataFrame) -> int:
    """The most attempts in flight at once ([admitted_s, done_s), half-open)."""
    t = np.concatenate([df.admitted_s.to_numpy(), df.done_s.to_numpy()])
    d = np.concatenate([np.ones(len(df)), -np.ones(len(df))])
    order = np.lexsort((d, t))  # at equal times an end (-1) before a start (+1)
    return int(np.cumsum(d[order]).max())


def test_it_runs_in_two_processes_against_a_local_server(tmp_path: Path) -> None:
    with rl.LocalServer(latency=rl.Fixed(0.02), seed=1) as server:
        exp = rl.Experiment(
            target=server, requests=48, workers=16, endpoints={"/get": 1, "/uuid": 1},
            strategy=PerEndpointConcurrency(2), seed=1,
        )  # fmt: skip
        result = rl.run(exp, processes=2, progress=False)
    df = result.df
    assert len(df) == 48 and (df.status == 200).all() and set(df.process) == {0, 1}
    assert result.experiment.strategy == PerEndpointConcurrency(2)
    # the bound holds in each process (each has its own guard), and binds: 8 workers
    # per process share 2 endpoints
    peaks = {k: _peak_in_flight(g) for k, g in df.groupby(["process", "endpoint"], observed=True)}
    assert set(peaks.values()) == {2}, peaks
    # a saved result names the class; loading it needs the class's module imported
    again = rl.load(result.save(tmp_path / "custom.parquet"))
    assert again.experiment.strategy == PerEndpointConcurrency(2)


def test_the_readme_usage_runs(server: rl.LocalServer) -> None:
    namespace = {"rl": rl, "server": server, "PerEndpointConcurrency": PerEndpointConcurrency}
    exec(_readme_blocks()[1], namespace)
    exp = namespace["exp"].replace(requests=20)
    df = rl.run(exp, progress=False).df
    assert (df.status == 200).all()
    for _, g in df.groupby("endpoint", observed=True):
        assert _peak_in_flight(g) <= 2


# ------------------------------------------------------------------ plain data, pickle


def test_round_trips_through_plain_data_and_pickle() -> None:
    s = PerEndpointConcurrency(3)
    assert s.to_dict() == {"type": "PerEndpointConcurrency", "n": 3}
    assert as_strategy(s.to_dict()) == s
    assert as_strategy({"type": "PerEndpointConcurrency", "n": 3}) == s  # a TOML table
    combo = s + rl.RateLimit(10, period_s=0.5)
    assert as_strategy(combo.to_dict()) == combo
    exp = rl.Experiment(target="http://127.0.0.1:9", strategy=combo)
    assert rl.Experiment.from_dict(exp.to_dict()) == exp
    assert pickle.loads(pickle.dumps(s)) == s
    assert pickle.loads(pickle.dumps(exp)).strategy == combo
    assert repr(s) == "PerEndpointConcurrency(n=3)"  # the dataclass repr: the label


def test_a_strategy_that_is_not_a_dataclass_says_how_to_get_a_plain_form() -> None:
    class _NotADataclass(Strategy):  # leading underscore: not registered
        def guard(self) -> rl.Guard:
            return rl.Guard()

    with pytest.raises(rl.ConfigError, match=r"dataclass\(frozen=True\).*or override to_dict"):
        _NotADataclass().to_dict()


def test_an_unknown_type_says_to_import_the_module() -> None:
    with pytest.raises(rl.ConfigError, match="module that defines its class is imported"):
        as_strategy({"type": "NoSuchStrategy", "n": 1})


# ------------------------------------------------------------------ the Guard contract


@dataclass
class Calls:
    """What a guard was asked, in order."""

    log: list[tuple[str, object]] = field(default_factory=list)
    loops: list[asyncio.AbstractEventLoop] = field(default_factory=list)


CALLS: dict[str, Calls] = {}


@dataclass(frozen=True)
class Recording(Strategy):
    """A guard that records every call; acquire fails for ``fail_on``."""

    name: str
    fail_on: str = "/none"

    def guard(self) -> rl.Guard:
        calls = CALLS.setdefault(self.name, Calls())
        calls.loops.append(asyncio.get_running_loop())  # raises outside a running loop
        return _RecordingGuard(calls, self.fail_on)


class _RecordingGuard(rl.Guard):
    def __init__(self, calls: Calls, fail_on: str) -> None:
        self.calls, self.fail_on = calls, fail_on

    async def acquire(self, endpoint: str) -> None:
        self.calls.log.append(("acquire", endpoint))
        if endpoint == self.fail_on:
            raise RuntimeError("no entry")

    def release(self, endpoint: str) -> None:
        self.calls.log.append(("release", endpoint))

    def observe(self, status: int, error: str | None) -> None:
        self.calls.log.append(("observe", (status, error)))

    async def aclose(self) -> None:
        self.calls.log.append(("aclose", None))


def test_the_engine_keeps_the_guard_contract(fresh_server) -> None:
    CALLS.clear()
    server = fresh_server(faults=rl.Faults(error_rate=0.3, seed=3))
    strategy = Recording("first", fail_on="/uuid") + Recording("second") + rl.Retry(2, 0.0)
    exp = rl.Experiment(
        target=server, requests=30, workers=3, endpoints={"/get": 1, "/uuid": 1},
        strategy=strategy, seed=2,
    )  # fmt: skip
    df = rl.run(exp, progress=False).df
    first, second = CALLS["first"].log, CALLS["second"].log
    assert len(CALLS["first"].loops) == len(CALLS["second"].loops) == 1  # once per run
    kinds = pd.Series([k for k, _ in first]).value_counts().to_dict()
    attempts = len(df)  # one row per attempt, retries included
    assert (df.attempt > 1).any() and (df.status == 500).any()
    uuid = df.endpoint == "/uuid"
    assert kinds["acquire"] == kinds["observe"] == attempts
    # acquire raised for /uuid: no release, an error row that never reached the second guard
    assert kinds["release"] == (~uuid).sum()
    assert (df.error[uuid] == "RuntimeError").all() and (df.status[uuid] == 0).all()
    assert ("acquire", "/uuid") not in second
    # every guard observes every attempt, the failed acquires' too
    assert sorted(x for k, x in second if k == "observe") == sorted(
        x for k, x in first if k == "observe"
    )
    assert first[-1] == ("aclose", None) and second[-1] == ("aclose", None)
    assert sum(k == "aclose" for k, _ in first) == 1


def test_a_custom_strategy_may_not_take_a_built_in_name() -> None:
    with pytest.raises(TypeError, match=r"may not be called 'RateLimit'"):

        class RateLimit(rl.Strategy):  # would make saved RateLimit runs load as this
            pass

    assert rl.Strategy._types["RateLimit"] is rl.RateLimit
