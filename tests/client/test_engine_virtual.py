"""The whole engine on the virtual clock (ratelab.testing): exact schedules, no sockets, no
wall-clock bounds. Every time below is what the code must produce, to a nanosecond."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ratelab as rl
from ratelab.client.engine import Engine
from ratelab.errors import RunError
from ratelab.records.schema import ERROR_CANCELLED, TIME_COLUMNS
from ratelab.testing import ScriptedTransport, SentRequest, run_virtual

URL = "http://127.0.0.1:9"  # never contacted: the scripted transport answers
NS = 1e-9


def _exp(**kwargs: Any) -> rl.Experiment:
    kwargs.setdefault("requests", 10)
    kwargs.setdefault("workers", 10)
    return rl.Experiment(target=URL, **kwargs)


def _run(exp: rl.Experiment, transport: ScriptedTransport, **kw: Any) -> pd.DataFrame:
    store, _meta = run_virtual(Engine(exp, base_url=URL, transport=transport, **kw).run())
    return store.to_frame()


def test_stamps_follow_the_life_of_a_request_exactly() -> None:
    tr = ScriptedTransport(latency_s=0.25)
    df = _run(_exp(requests=6, workers=2), tr)
    # two workers, 0.25 s each: requests finish in pairs at 0.25, 0.5, 0.75
    assert df.done_s.to_numpy() == pytest.approx([0.25, 0.25, 0.5, 0.5, 0.75, 0.75], abs=NS)
    assert (df.headers_s == df.done_s).all()
    assert (df.sent_s == df.admitted_s).all() and df.pool_queued_s.isna().all()
    assert (df.status == 200).all() and df.error.isna().all()
    times = df[list(TIME_COLUMNS)].drop(columns=["pool_queued_s", "pool_acquired_s"]).to_numpy()
    assert (np.diff(times, axis=1) >= 0).all()  # scheduled <= dequeued <= ... <= done
    assert [r.request_id for r in tr.sent] == [0, 1, 2, 3, 4, 5]
    assert tr.closed


def test_aiolimiter_burst_then_one_per_interval() -> None:
    df = _run(_exp(requests=30, workers=30, strategy=rl.RateLimit(10)), ScriptedTransport())
    # the real AsyncLimiter: an empty bucket admits 10 at once, then one every 0.1 s
    expected = [0.0] * 10 + [0.1 * k for k in range(1, 21)]
    assert np.sort(df.admitted_s.to_numpy()) == pytest.approx(expected, abs=NS)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (rl.TokenBucket(10, burst=1), [0.1 * k for k in range(12)]),
        (rl.TokenBucket(10, burst=3), [0, 0, 0] + [0.1 * k for k in range(1, 10)]),
        (rl.SlidingWindow(4, window_s=1.0), [0] * 4 + [1] * 4 + [2] * 4),
        (rl.RateLimit(1, period_s=0.1), [0.1 * k for k in range(12)]),
    ],
    ids=["token-bucket-burst-free", "token-bucket-burst-3", "sliding-window", "rate-burst-free"],
)
def test_every_rate_strategy_admits_on_its_exact_schedule(strategy, expected) -> None:
    df = _run(_exp(requests=12, workers=12, strategy=strategy), ScriptedTransport())
    assert np.sort(df.admitted_s.to_numpy()) == pytest.approx(expected, abs=NS)


def test_adaptive_halves_its_rate_on_every_429() -> None:
    # start at 10/s: gaps 0.1, then 1/5, then 1/2.5 as each 429 halves the rate
    adaptive = rl.Adaptive(start_rate_per_s=10, min_rate_per_s=1, decrease=0.5, cooldown_s=0)
    tr = ScriptedTransport(respond=lambda req: 429)
    store, meta = run_virtual(
        Engine(_exp(requests=4, workers=1, strategy=adaptive), base_url=URL, transport=tr).run()
    )
    df = store.to_frame()
    assert df.admitted_s.to_numpy() == pytest.approx([0.0, 0.1, 0.3, 0.7], abs=NS)
    assert [r for _, r in meta["adaptive_rate"]] == [10, 5, 2.5, 1.25, 1]


def test_connection_limit_queues_fifo_and_stamps_the_pool_wait() -> None:
    tr = ScriptedTransport(latency_s=0.1)
    df = _run(_exp(requests=6, workers=6, strategy=rl.ConnectionLimit(2)), tr)
    assert tr.max_in_use == 2
    waited = df.pool_queued_s.notna()
    assert waited.tolist() == [False, False, True, True, True, True]
    assert df.pool_acquired_s[waited].to_numpy() == pytest.approx([0.1, 0.1, 0.2, 0.2], abs=NS)
    assert (df.sent_s[waited] == df.pool_acquired_s[waited]).all()
    assert df.done_s.to_numpy() == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.3], abs=NS)


def test_concurrency_bounds_in_flight_for_its_endpoint_only() -> None:
    tr = ScriptedTransport(latency_s=0.1)
    exp = _exp(
        requests=40, workers=40, endpoints={"/slow": 1, "/get": 1},
        strategy=rl.Concurrency(2, endpoint="/slow"), seed=3,
    )  # fmt: skip
    df = _run(exp, tr)
    slow = df[df.endpoint == "/slow"]
    fast = df[df.endpoint == "/get"]
    assert np.allclose(fast.done_s, 0.1, rtol=0, atol=NS)  # never held back
    n = len(slow)
    ends = np.sort(slow.done_s.to_numpy())
    assert ends == pytest.approx([0.1 * (k // 2 + 1) for k in range(n)], abs=NS)


def test_retry_honours_retry_after_exactly() -> None:
    def respond(req: SentRequest) -> Any:
        return (429, {"Retry-After": "0.5"}) if req.attempt == 1 else 200

    tr = ScriptedTransport(latency_s=0.01, respond=respond)
    # jitter=None: exactly the server's wait (a jitter adds its spread after it, see below)
    df = _run(_exp(requests=4, workers=4, strategy=rl.Retry(max_attempts=3, jitter=None)), tr)
    assert len(df) == 8 and df.groupby("request_id").size().eq(2).all()
    second = df[df.attempt == 2]
    assert (second.ready_s - second.dequeued_s).to_numpy() == pytest.approx([0.5] * 4, abs=NS)
    assert (second.status == 200).all()
    assert second.sent_s.to_numpy() == pytest.approx([0.51] * 4, abs=NS)


def test_retry_backoff_doubles_without_jitter() -> None:
    tr = ScriptedTransport(respond=lambda req: 500)
    retry = rl.Retry(max_attempts=4, backoff_s=0.05, jitter=False)
    df = _run(_exp(requests=1, workers=1, strategy=retry), tr)
    assert df.attempt.tolist() == [1, 2, 3, 4] and (df.status == 500).all()
    pauses = (df.ready_s - df.dequeued_s).to_numpy()
    assert pauses == pytest.approx([0.0, 0.05, 0.1, 0.2], abs=NS)


def test_think_time_is_the_seeded_draw_exactly() -> None:
    """Each request pauses between dequeue and ready for exactly its think time, drawn
    from the seed (the real clock can only bound it: test_engine.py's schema test)."""
    exp = _exp(requests=30, workers=5, think_time=rl.Uniform(0.0, 0.01), seed=3)
    df = _run(exp, ScriptedTransport(latency_s=0.004))
    drawn = Engine(exp, base_url=URL).think_s  # a fresh engine draws from the seed alone
    assert drawn is not None and len(set(drawn.tolist())) == 30  # 30 different pauses
    assert ((drawn >= 0.0) & (drawn < 0.01)).all()
    think = (df.ready_s - df.dequeued_s).to_numpy()
    assert think == pytest.approx(drawn[df.request_id.to_numpy()], abs=NS)
    other = Engine(exp.replace(seed=4), base_url=URL).think_s
    assert other is not None and not np.allclose(other, drawn)  # another seed, other draws


def test_one_experiment_runs_again_with_a_fresh_limiter() -> None:
    """One Experiment run twice in a row on one loop: each run builds its own limiter, so
    the second run's burst of 25 goes at once, as the first run's did. (A limiter kept
    from the first run would still be full: the second run's k-th request would wait
    k/25 s.)"""
    exp = _exp(requests=25, workers=25, strategy=rl.RateLimit(25))

    async def twice() -> list[pd.DataFrame]:
        frames = []
        for _ in range(2):
            engine = Engine(exp, base_url=URL, transport=ScriptedTransport(latency_s=0.01))
            store, _meta = await engine.run()
            frames.append(store.to_frame())
        return frames

    for df in run_virtual(twice()):
        assert (df.status == 200).all()
        assert df.admitted_s.to_numpy() == pytest.approx([0.0] * 25, abs=NS)


def test_open_loop_sends_on_the_arrival_schedule() -> None:
    tr = ScriptedTransport(latency_s=0.05)
    df = _run(_exp(requests=5, workers=1, arrivals=rl.Constant(10)), tr)
    assert df.scheduled_s.to_numpy() == pytest.approx([0, 0.1, 0.2, 0.3, 0.4], abs=NS)
    assert (df.status == 200).all()  # the run waits for arrivals still to come
    assert df.dequeued_s.to_numpy() == pytest.approx(df.scheduled_s.to_numpy(), abs=NS)


def test_open_loop_backlog_waits_in_the_queue() -> None:
    tr = ScriptedTransport(latency_s=0.2)  # one worker, 0.2 s each, arrivals every 0.1 s
    df = _run(_exp(requests=5, workers=1, arrivals=rl.Constant(10)), tr)
    queued = (df.dequeued_s - df.scheduled_s).to_numpy()
    assert queued == pytest.approx([0, 0.1, 0.2, 0.3, 0.4], abs=NS)


def test_failures_and_timeouts_are_rows() -> None:
    def respond(req: SentRequest) -> Any:
        return ConnectionResetError("peer") if req.request_id % 2 else 200

    tr = ScriptedTransport(latency_s=lambda r: 5.0 if r.request_id == 0 else 0.1, respond=respond)
    df = _run(_exp(requests=6, workers=6, timeout_s=1.0), tr)
    assert df.error.astype(str).tolist()[:2] == ["TimeoutError", "ConnectionResetError"]
    assert df.done_s[0] == pytest.approx(1.0, abs=NS) and df.status[0] == 0
    assert (df.error[1::2] == "ConnectionResetError").all() and (df.status[2::2] == 200).all()


def test_cancelling_the_run_returns_what_was_recorded() -> None:
    async def main() -> tuple[Any, dict[str, Any]]:
        engine = Engine(_exp(requests=10, workers=2), base_url=URL,
                        transport=ScriptedTransport(latency_s=0.1))  # fmt: skip
        task = asyncio.ensure_future(engine.run())
        await asyncio.sleep(0.25)
        task.cancel()
        return await task

    store, meta = run_virtual(main())
    df = store.to_frame()
    assert meta["interrupted"] is True and len(df) == 10
    done = df.error.isna()
    assert done.sum() == 4  # two workers finished two each by 0.25 s
    assert (df.error[~done] == ERROR_CANCELLED).all()
    assert df.done_s[done].max() == pytest.approx(0.2, abs=NS)


# ------------------------------------------------------------------ nothing hangs


class _Boom(rl.Strategy):
    """A custom strategy whose guard fails in the chosen method (after ``after`` calls)."""

    def __init__(self, where: str, after: int = 0) -> None:
        self.where = where
        self.after = after

    def guard(self) -> rl.Guard:
        if self.where == "guard":
            raise ZeroDivisionError("no guard today")
        where, after = self.where, self.after
        calls = {"n": 0}

        class G(rl.Guard):
            def _maybe(self, name: str) -> None:
                if name == where:
                    calls["n"] += 1
                    if calls["n"] > after:
                        raise KeyError(f"{name} broke")

            def release(self, endpoint: str) -> None:
                self._maybe("release")

            def observe(self, status: int, error: str | None) -> None:
                self._maybe("observe")

            async def aclose(self) -> None:
                self._maybe("aclose")

        return G()

    def __repr__(self) -> str:
        return f"Boom({self.where})"


@pytest.mark.parametrize("where", ["release", "observe"])
def test_a_guard_that_raises_ends_the_run_with_the_rows_so_far(where: str) -> None:
    engine = Engine(_exp(requests=20, workers=2, strategy=_Boom(where, after=5)), base_url=URL,
                    transport=ScriptedTransport(latency_s=0.1))  # fmt: skip
    with pytest.raises(RunError, match=rf"guard Boom\({where}\)\.{where} raised KeyError") as info:
        run_virtual(engine.run())
    err = info.value
    assert err.where == f"guard Boom({where}).{where}"
    assert isinstance(err.__cause__, KeyError)
    store, meta = err.records  # type: ignore[misc]
    df = store.to_frame()
    assert len(df) == 20 and meta["failed"] == err.where and meta["interrupted"]
    ok = df.status == 200
    assert 5 <= ok.sum() <= 7  # the 6th call failed: the rows before it kept
    assert (df.error[~ok] == ERROR_CANCELLED).all()


def test_a_guard_whose_aclose_raises_keeps_every_row() -> None:
    engine = Engine(_exp(requests=4, strategy=_Boom("aclose")), base_url=URL,
                    transport=ScriptedTransport())  # fmt: skip
    with pytest.raises(RunError, match=r"guard Boom\(aclose\)\.aclose") as info:
        run_virtual(engine.run())
    store, _ = info.value.records  # type: ignore[misc]
    assert (store.to_frame().status == 200).all()


def test_a_strategy_whose_guard_method_raises_names_it() -> None:
    engine = Engine(_exp(strategy=_Boom("guard")), base_url=URL, transport=ScriptedTransport())
    with pytest.raises(RunError, match=r"strategy Boom\(guard\)\.guard\(\) raised ZeroDiv"):
        run_virtual(engine.run())


def test_a_transport_that_cannot_open_names_it() -> None:
    class Broken(ScriptedTransport):
        name = "broken"

        async def open(self, stamps: Any, **kw: Any) -> None:
            raise OSError("no sockets here")

    engine = Engine(_exp(), base_url=URL, transport=Broken())
    with pytest.raises(RunError, match=r"transport broken\.open raised OSError") as info:
        run_virtual(engine.run())
    store, _ = info.value.records  # type: ignore[misc]
    assert (store.to_frame().error == ERROR_CANCELLED).all()


def test_a_progress_callback_that_raises_ends_the_run() -> None:
    def on_tick(n: int) -> None:
        raise RuntimeError("bar broke")

    engine = Engine(_exp(requests=100, workers=1), base_url=URL, on_tick=on_tick, tick_s=0.5,
                    transport=ScriptedTransport(latency_s=0.1))  # fmt: skip
    with pytest.raises(RunError, match="the progress callback raised RuntimeError"):
        run_virtual(engine.run())


@pytest.mark.parametrize(("asks", "gap_s"), [(None, 0.5), (0.125, 0.125), (0.0, 0.01)])
def test_the_progress_callback_says_when_it_wants_the_next_call(
    asks: float | None, gap_s: float
) -> None:
    # a live view returns the seconds until its next frame is due: the ticker wakes then
    # (never later than tick_s, never sooner than MIN_TICK_S); None keeps the tick
    from ratelab.client.engine import MIN_TICK_S

    calls: list[float] = []

    def on_tick(n: int) -> float | None:
        calls.append(asyncio.get_running_loop().time())
        return asks

    engine = Engine(_exp(requests=30, workers=1), base_url=URL, on_tick=on_tick, tick_s=0.5,
                    transport=ScriptedTransport(latency_s=0.1))  # fmt: skip
    run_virtual(engine.run())
    gaps = np.diff(calls[:-1])  # the last call is the one at the end of the run
    assert len(gaps) >= 4
    assert gaps == pytest.approx(gap_s, abs=1e-6)
    assert MIN_TICK_S == 0.01


def test_bookkeeping_failure_in_a_retry_ends_the_run(monkeypatch) -> None:
    from ratelab.records.store import RecordStore

    def no_room(self: RecordStore, like: int, attempt: int) -> int:
        raise MemoryError("full")

    monkeypatch.setattr(RecordStore, "new_row", no_room)
    exp = _exp(requests=3, workers=1, strategy=rl.Retry(max_attempts=2))
    engine = Engine(exp, base_url=URL, transport=ScriptedTransport(respond=lambda r: 503))
    with pytest.raises(RunError, match=r"the retry of request 0 raised MemoryError"):
        run_virtual(engine.run())


def test_an_attempt_counter_that_cannot_overflow() -> None:
    with pytest.raises(rl.ConfigError, match=r"Retry\(max_attempts\)=40000"):
        rl.Retry(max_attempts=40_000)


def test_a_guard_failure_through_rl_run_returns_the_partial_result(server) -> None:
    exp = rl.Experiment(target=server.url, requests=30, workers=3, strategy=_Boom("observe", 10))
    with pytest.raises(RunError, match=r"guard Boom\(observe\)\.observe") as info:
        rl.run(exp, progress=False)
    result = info.value.result
    assert isinstance(result, rl.Result) and len(result.df) == 30
    # the 11th observe raised (its own request was ok); the two other workers' requests in
    # flight may still finish before they are cancelled
    assert result.interrupted and 11 <= (result.df.status == 200).sum() <= 13


@pytest.mark.parametrize(
    "header",
    ["inf", "1e9", "nan", "Fri, 31 Dec 9999 23:59:59 GMT", "Fri, 31 Dec 9999 23:59:59 -0000"],
)
def test_a_bogus_retry_after_waits_at_most_max_backoff_s(header: str) -> None:
    # issue 17 item 2: Retry-After: inf / 1e9 / a year-9999 date stalled the run for ever
    def respond(req: SentRequest) -> Any:
        return (503, {"Retry-After": header})

    tr = ScriptedTransport(latency_s=0.01, respond=respond)
    retry = rl.Retry(max_attempts=3, max_backoff_s=1, jitter=False, backoff_s=0.25)
    df = _run(_exp(requests=2, workers=2, strategy=retry, timeout_s=1), tr)
    assert len(df) == 6
    df = df.sort_values(["request_id", "attempt"])
    pauses = (df.ready_s - df.dequeued_s).to_numpy()
    # nan is no wait at all: the exponential backoff applies (0.25, 0.5); the rest: capped
    expected = [0.0, 0.25, 0.5] if header == "nan" else [0.0, 1.0, 1.0]
    assert pauses == pytest.approx(expected * 2, abs=NS)
    assert df.done_s.max() < 3


def test_retry_backoff_caps_every_retry_after_at_max_backoff_s() -> None:
    from ratelab.client.engine import parse_retry_after

    retry = rl.Retry(max_backoff_s=2.5, jitter=None)
    assert retry.backoff(1, float("inf"), 0.5) == 2.5
    assert retry.backoff(1, 1e300, 0.5) == 2.5
    assert retry.backoff(1, 0.75, 0.5) == 0.75
    # with a jitter the cap bounds the whole wait, and the spread stays below it
    for jitter, span in (("full", 0.1), ("equal", 0.05)):
        r = rl.Retry(max_backoff_s=2.5, jitter=jitter)
        assert r.backoff(1, float("inf"), 0.0) == pytest.approx(2.5 - span)
        assert r.backoff(1, float("inf"), 0.999999) == pytest.approx(2.5, abs=1e-6)
        assert r.backoff(1, 1e300, 0.999999) <= 2.5
        assert r.backoff(1, 0.75, 0.5) == pytest.approx(0.75 + span / 2)
    assert parse_retry_after("nan") is None
    assert parse_retry_after("inf") == float("inf")
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 -0000") > 1e10
