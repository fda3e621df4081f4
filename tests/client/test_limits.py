"""Issue 14 on the client, on the virtual clock: request costs, AllOf against ``+``, guards
that carry a late timer's lateness forward, Retry's jitter after a shared Retry-After, and
HeaderPacing reading every header style. Every number is what the code must produce."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ratelab as rl
from ratelab.client.engine import Engine
from ratelab.client.guards import takes_cost
from ratelab.protocol.header_styles import STYLES, format_headers
from ratelab.protocol.quota import Quota
from ratelab.testing import ScriptedTransport, SentRequest, VirtualClockLoop, run_virtual

URL = "http://127.0.0.1:9"  # never contacted: the scripted transport answers
NS = 1e-9


def _exp(**kwargs: Any) -> rl.Experiment:
    kwargs.setdefault("requests", 10)
    kwargs.setdefault("workers", 10)
    return rl.Experiment(target=URL, **kwargs)


def _run(exp: rl.Experiment, transport: ScriptedTransport) -> pd.DataFrame:
    # No state sampling: these schedules put requests exactly on window edges, and the
    # sampler's timers are loop events too (on the virtual clock a busy iteration moves
    # time by TICK_S, 1 ps), so they can move such ties by picoseconds.
    engine = Engine(exp, base_url=URL, transport=transport, state_interval_s=None)
    store, _meta = run_virtual(engine.run())
    return store.to_frame()


# -- costs -----------------------------------------------------------------------------------


def test_each_request_carries_its_seeded_whole_cost_in_the_column_and_the_header() -> None:
    tr = ScriptedTransport(respond=lambda req: 500 if req.attempt == 1 else 200)
    exp = _exp(requests=20, workers=4, cost=rl.Uniform(200, 2000), seed=7,
               strategy=rl.Retry(max_attempts=2, backoff_s=0))  # fmt: skip
    df = _run(exp, tr)
    first = df[df.attempt == 1].cost.to_numpy()
    assert (first == np.rint(first)).all() and 200 <= first.min() and first.max() <= 2000
    assert len(set(first.tolist())) > 10  # drawn per request, not one value
    # the same seed draws the same costs; a retry keeps its request's cost
    again = _run(exp, ScriptedTransport(respond=lambda req: 200))
    assert again[again.attempt == 1].cost.tolist() == first.tolist()
    retries = df[df.attempt == 2].set_index("request_id").cost
    assert retries.to_dict() == df[df.attempt == 1].set_index("request_id").cost.to_dict()
    # sent in X-Ratelab-Cost with every attempt
    sent = {(r.request_id, r.attempt): r.cost for r in tr.sent}
    for row in df.itertuples():
        assert sent[(row.request_id, row.attempt)] == int(row.cost)
    # no cost: NaN in the column and no header
    plain = ScriptedTransport()
    assert _run(_exp(requests=3), plain).cost.isna().all()
    assert [r.cost for r in plain.sent] == [None, None, None]


def test_a_fixed_cost_is_drawn_without_changing_the_other_draws() -> None:
    exp = _exp(requests=30, endpoints={"/a": 1, "/b": 1}, think_time=rl.Uniform(0, 1), seed=3)
    base = _run(exp, ScriptedTransport())
    costed = _run(exp.replace(cost=5), ScriptedTransport())
    assert (costed.cost == 5).all()
    cols = ["endpoint", "ready_s", "dequeued_s"]
    pd.testing.assert_frame_equal(base[cols], costed[cols])  # costs are drawn last


def test_a_tokens_rate_limit_acquires_each_requests_cost() -> None:
    # 10 tokens per second, a bucket of 10; each request costs 5: two at once, then one
    # every 0.5 s (aiolimiter's acquire(5)); counted in requests it would send all 8 at 0
    tokens = rl.RateLimit(10, unit="tokens")
    df = _run(_exp(requests=8, strategy=tokens, cost=5), ScriptedTransport())
    assert np.sort(df.admitted_s.to_numpy()) == pytest.approx(
        [0, 0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], abs=1e-6
    )
    df = _run(_exp(requests=8, strategy=rl.RateLimit(10), cost=5), ScriptedTransport())
    assert (df.admitted_s < 1e-6).all()


# -- AllOf against + ---------------------------------------------------------------------------


class _TwoLimitServer:
    """A server holding the client to the same two limits, counted when requests ARRIVE: at
    most ``limit`` requests in any ``window_s`` (a sliding log) and a leaky bucket of
    ``tokens`` per ``period_s``. Refuses (429) what would break either."""

    def __init__(self, limit: int, window_s: float, tokens: float, period_s: float) -> None:
        self.limit, self.window_s, self.log = limit, window_s, deque[float]()
        self.cap, self.rate, self.level, self.last = tokens, tokens / period_s, 0.0, 0.0

    def __call__(self, req: SentRequest) -> int:
        t = req.t_s
        while self.log and self.log[0] <= t - self.window_s + NS:
            self.log.popleft()
        self.level = max(0.0, self.level - (t - self.last) * self.rate)
        self.last = t
        assert req.cost is not None
        if len(self.log) >= self.limit or self.level + req.cost > self.cap + NS:
            return 429
        self.log.append(t)
        self.level += req.cost
        return 200


def _two_limits(strategy: rl.Strategy) -> pd.DataFrame:
    server = _TwoLimitServer(2, 1.0, 10, 1.0)
    exp = _exp(requests=60, workers=8, strategy=strategy, cost=rl.Uniform(1, 10), seed=3)
    return _run(exp, ScriptedTransport(respond=server))


def test_plus_spends_limits_on_refused_requests_and_all_of_does_not() -> None:
    # The client holds itself to the server's two limits. With `+` a request takes its
    # request slot, then waits for tokens: the slot is booked when taken, the request is
    # sent later, so the client's window runs ahead of the server's and the server refuses
    # 10 of 60 (their request slots and 51 tokens spent for nothing). AllOf takes both only
    # when both have room: sent exactly when booked, none refused.
    requests, tokens = rl.SlidingWindow(2, 1.0), rl.RateLimit(10, unit="tokens")
    plus = _two_limits(requests + tokens)
    assert (plus.status == 429).sum() == 10
    assert plus.cost[plus.status == 429].sum() == 51
    all_of = _two_limits(rl.AllOf(requests, tokens))
    assert (all_of.status == 429).sum() == 0
    assert (all_of.status == 200).sum() == 60
    # ... and it is not slower for it: 60 requests at 2 per second
    assert all_of.done_s.max() == pytest.approx(33.3, abs=1e-6)


def test_all_of_never_holds_a_concurrency_slot_while_it_waits_for_tokens() -> None:
    seen: dict[str, bool] = {}

    async def main(strategy: rl.Strategy) -> None:
        guards = strategy.build().guards
        sem = next(
            g._semaphore for g in guards if hasattr(g, "_semaphore")
        ) if len(guards) > 1 else guards[0]._parts[0]._semaphore  # fmt: skip

        async def acquire(cost: float) -> None:  # as the engine does
            for g in guards:
                if takes_cost(g):
                    await g.acquire("/get", cost)  # type: ignore[call-arg]
                else:
                    await g.acquire("/get")

        def release() -> None:
            for g in guards:
                g.release("/get")

        await acquire(10)  # the bucket is full (10 tokens, 10/s) and the slot taken
        waiter = asyncio.ensure_future(acquire(10))  # tokens come back at 1.0 s
        await asyncio.sleep(0.5)
        release()  # the first is done at 0.5 s
        await asyncio.sleep(0.2)  # at 0.7 s the second still waits for tokens
        seen[repr(strategy)] = sem.locked()
        await waiter
        assert asyncio.get_running_loop().time() == pytest.approx(1.0, abs=1e-6)

    c, t = rl.Concurrency(1), rl.RateLimit(10, unit="tokens")
    run_virtual(main(c + t))
    run_virtual(main(rl.AllOf(c, t)))
    assert seen == {
        "Concurrency(1) + RateLimit(10, unit='tokens')": True,  # held while waiting
        "AllOf(Concurrency(1), RateLimit(10, unit='tokens'))": False,  # free while waiting
    }


def test_all_of_waits_for_a_release_then_for_time_and_takes_both() -> None:
    # Concurrency(1) and a burst-free 2/s: the second request waits for the first to end
    # (0.1 s) and for the rate (0.5 s); the third for the rate only after that.
    exp = _exp(requests=3, workers=3,
               strategy=rl.AllOf(rl.Concurrency(1), rl.TokenBucket(2, burst=1)))  # fmt: skip
    df = _run(exp, ScriptedTransport(latency_s=0.1))
    assert np.sort(df.admitted_s.to_numpy()) == pytest.approx([0, 0.5, 1.0], abs=NS)
    # with a long request the slot binds instead: 0, 0.8, 1.6
    df = _run(exp, ScriptedTransport(latency_s=0.8))
    assert np.sort(df.admitted_s.to_numpy()) == pytest.approx([0, 0.8, 1.6], abs=NS)


def test_all_of_is_plain_data_and_refuses_what_it_cannot_hold() -> None:
    s = rl.AllOf(rl.RateLimit(500, period_s=60), rl.RateLimit(30_000, period_s=60,
                 unit="tokens"), rl.Concurrency(100))  # fmt: skip
    assert repr(s) == (
        "AllOf(RateLimit(500, period_s=60), RateLimit(30000, period_s=60, unit='tokens'), "
        "Concurrency(100))"
    )
    exp = _exp(strategy=s + rl.Retry(), cost=rl.Uniform(200, 2000))
    assert rl.Experiment.from_dict(exp.to_dict()) == exp
    assert exp.strategy.concurrency_cap == 100
    assert exp.strategy.rate_limit_per_s == pytest.approx(500 / 60)
    assert rl.AllOf(rl.AllOf(rl.Concurrency(2)), rl.TokenBucket(3)).limits == (
        rl.Concurrency(2), rl.TokenBucket(3)
    )  # fmt: skip
    for bad in (rl.Retry(), rl.ConnectionLimit(3), rl.Adaptive(), rl.HeaderPacing()):
        with pytest.raises(rl.ConfigError) as info:
            rl.AllOf(rl.RateLimit(5), bad)
        assert info.value.parameter == "AllOf" and info.value.value == bad
    with pytest.raises(rl.ConfigError):
        rl.AllOf()


# -- lateness carried forward ---------------------------------------------------------------


class _LateTimers(VirtualClockLoop):
    """Every timer fires ``late_s`` after it was due, as a busy machine's would."""

    def __init__(self, late_s: float) -> None:
        super().__init__()
        self.late_s = late_s

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        return super().call_at(when + self.late_s, callback, *args, context=context)


def _run_late(exp: rl.Experiment, late_s: float) -> pd.DataFrame:
    loop = _LateTimers(late_s)
    try:
        engine = Engine(exp, base_url=URL, transport=ScriptedTransport())
        store, _meta = loop.run_until_complete(engine.run())
    finally:
        loop.close()
    return store.to_frame()


def _burst_free(kind: str, rate: float) -> rl.Strategy:
    if kind == "TokenBucket":
        return rl.TokenBucket(rate, burst=1)
    if kind == "SlidingWindow":
        return rl.SlidingWindow(1, 1 / rate)
    return rl.Adaptive(start_rate_per_s=rate, min_rate_per_s=rate, max_rate_per_s=rate)


@pytest.mark.parametrize("kind", ["TokenBucket", "SlidingWindow", "Adaptive"])
@pytest.mark.parametrize("rate", [600.0, 1500.0, 2000.0])
@pytest.mark.parametrize("late_s", [0.0005, 0.001])
def test_burst_free_limits_deliver_their_rate_with_late_timers(
    kind: str, rate: float, late_s: float
) -> None:
    # Booking each wait at the moment the timer fired lost its lateness every time:
    # 1 / (1/600 + 0.5 ms) = 462/s at 600/s. Booked at the ideal time, the schedule stays
    # k / rate: each request goes no earlier than that and at most one timer's lateness later.
    n = 600
    df = _run_late(_exp(requests=n, workers=20, strategy=_burst_free(kind, rate)), late_s)
    admitted = np.sort(df.admitted_s.to_numpy())
    ideal = np.arange(n) / rate
    assert (admitted >= ideal - 1e-6).all()
    assert (admitted <= ideal + late_s + 1e-6).all()
    delivered = (n - 1) / admitted[-1]
    assert delivered >= 0.99 * rate


def test_a_late_timer_on_a_600_per_s_bucket_is_exactly_one_lateness_behind() -> None:
    df = _run_late(_exp(requests=7, workers=7, strategy=rl.TokenBucket(600, burst=1)), 0.0005)
    expected = [0.0] + [k / 600 + 0.0005 for k in range(1, 7)]
    assert np.sort(df.admitted_s.to_numpy()) == pytest.approx(expected, abs=NS)


def test_an_adaptive_cut_respaces_the_requests_already_waiting() -> None:
    # 10/s, 4 workers: requests 1-3 hold slots at 0.1, 0.2, 0.3 when request 0's 429 (at
    # 0.05 s) halves the rate; those slots are void, and from 0.1 s on every request is
    # 1/5 s after the one before (the schedule the lock-based guard gave)
    adaptive = rl.Adaptive(start_rate_per_s=10, min_rate_per_s=1, decrease=0.5,
                           cooldown_s=0, increase=1e-9)  # fmt: skip
    respond = lambda req: 429 if req.request_id == 0 else 200  # noqa: E731
    df = _run(_exp(requests=8, workers=4, strategy=adaptive),
              ScriptedTransport(latency_s=0.05, respond=respond))  # fmt: skip
    assert np.sort(df.admitted_s.to_numpy()) == pytest.approx(
        [0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3], abs=NS
    )


def test_an_idle_bucket_does_not_bank_its_idle_time() -> None:
    # ideal-time booking is for requests that waited: after 1 s idle, burst=1 still means
    # one at once and the next 1/rate later
    exp = _exp(requests=4, workers=1, arrivals=rl.Constant(1.0),
               strategy=rl.TokenBucket(10, burst=1))  # fmt: skip
    df = _run(exp, ScriptedTransport())
    assert df.admitted_s.to_numpy() == pytest.approx([0, 1, 2, 3], abs=NS)
    exp = exp.replace(arrivals=None, workers=4)
    df = _run(exp, ScriptedTransport())
    assert np.sort(df.admitted_s.to_numpy()) == pytest.approx([0, 0.1, 0.2, 0.3], abs=NS)


# -- Retry's jitter after a shared Retry-After -------------------------------------------------


def _refused_together(jitter: Any) -> pd.DataFrame:
    def respond(req: SentRequest) -> Any:
        return (429, {"Retry-After": "1"}) if req.attempt == 1 else 200

    retry = rl.Retry(max_attempts=2, backoff_s=0.1, jitter=jitter)
    return _run(_exp(requests=50, workers=50, strategy=retry, seed=1),
                ScriptedTransport(latency_s=0.01, respond=respond))  # fmt: skip


def test_jittered_retries_after_a_shared_retry_after_spread_out() -> None:
    # 50 workers refused at the same instant with Retry-After: 1. Without jitter all 50
    # come back in the same millisecond; "full" spreads them over backoff_s (0.1 s) after
    # the Retry-After, "equal" over half of it; none before the server's wait is over.
    for jitter, span, distinct_ms in ((None, 0.0, 1), ("full", 0.1, 35), ("equal", 0.05, 27)):
        df = _refused_together(jitter)
        sent = df[df.attempt == 2].sent_s.to_numpy()
        assert len(sent) == 50
        assert sent.min() >= 1.01 - NS
        assert sent.max() <= 1.01 + span + NS
        assert sent.max() - sent.min() >= 0.9 * span
        assert len(np.unique(np.floor(sent * 1000))) == distinct_ms


def test_jitter_true_and_false_are_the_old_names_of_full_and_none() -> None:
    assert rl.Retry(jitter=True) == rl.Retry(jitter="full")
    assert rl.Retry(jitter=False) == rl.Retry(jitter=None)
    assert repr(rl.Retry(jitter=False)) == "Retry(max_attempts=3, backoff_s=0.1, jitter=None)"
    r = rl.Retry(backoff_s=0.1, jitter="equal")
    assert r.backoff(1, None, 0.0) == pytest.approx(0.05)
    assert r.backoff(1, None, 0.5) == pytest.approx(0.075)
    assert rl.Experiment.from_dict(_exp(strategy=r).to_dict()).strategy == r
    with pytest.raises(rl.ConfigError) as info:
        rl.Retry(jitter="half")
    assert info.value.parameter == "Retry(jitter)"


# -- the Guard contract: costs and headers, old guards unchanged ------------------------------


def test_guards_get_cost_and_headers_when_they_ask_and_old_guards_still_work() -> None:
    from ratelab.client.guards import Guard

    calls: list[tuple[str, Any]] = []

    class Old(Guard):
        async def acquire(self, endpoint: str) -> None:
            calls.append(("old acquire", endpoint))

        def observe(self, status: int, error: str | None) -> None:
            calls.append(("old observe", status))

    class New(Guard):
        async def acquire(self, endpoint: str, cost: float | None) -> None:
            calls.append(("new acquire", cost))

        def observe(self, status: int, error: str | None, headers: Any) -> None:
            calls.append(("new observe", None if headers is None else dict(headers)))

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class OldS(rl.Strategy):
        def guard(self) -> Guard:
            return Old()

    @dataclass(frozen=True)
    class NewS(rl.Strategy):
        def guard(self) -> Guard:
            return New()

    tr = ScriptedTransport(respond=lambda req: (200, {"RateLimit-Remaining": "4"}))
    _run(_exp(requests=1, workers=1, strategy=OldS() + NewS(), cost=7), tr)
    assert calls == [
        ("old acquire", "/get"),
        ("new acquire", 7.0),
        ("old observe", 200),
        ("new observe", {"RateLimit-Remaining": "4"}),
    ]


# -- HeaderPacing -------------------------------------------------------------------------------


class _WindowServer:
    """A fixed window of ``limit`` requests per ``window_s`` (plus a tokens window when
    ``tokens``), announcing its quotas in ``style`` on every response, 429 + Retry-After
    when full."""

    def __init__(self, style: str | None, limit: int, window_s: float, *, epoch0: float,
                 tokens: float | None = None) -> None:  # fmt: skip
        self.style, self.limit, self.window_s, self.epoch0 = style, limit, window_s, epoch0
        self.tokens = tokens
        self.used: dict[int, tuple[int, float]] = {}

    def __call__(self, req: SentRequest) -> tuple[int, dict[str, str]]:
        w = int(req.t_s // self.window_s + NS)
        n, spent = self.used.get(w, (0, 0.0))
        reset = (w + 1) * self.window_s - req.t_s
        cost = float(req.cost or 0)
        ok = n < self.limit and (self.tokens is None or spent + cost <= self.tokens)
        if ok:
            n, spent = n + 1, spent + cost
            self.used[w] = (n, spent)
        quotas = [Quota("requests", self.limit, self.limit - n, reset, self.window_s)]
        if self.tokens is not None:
            quotas.append(
                Quota("tokens", self.tokens, self.tokens - spent, reset, self.window_s, "tokens")
            )
        headers = format_headers(self.style, quotas, now_epoch_s=self.epoch0 + req.t_s,
                                 retry_after_s=None if ok else reset)  # fmt: skip
        return (200 if ok else 429), headers


def _paced(style: str | None, strategy: rl.Strategy, **kw: Any) -> pd.DataFrame:
    loop = VirtualClockLoop(epoch_offset_s=1.8e9)
    server = _WindowServer(style, 20, 1.0, epoch0=1.8e9, **kw)
    exp = _exp(requests=100, workers=10, strategy=strategy, seed=1,
               cost=kw.get("tokens") and rl.Uniform(10, 50))  # fmt: skip
    try:
        engine = Engine(
            exp, base_url=URL, transport=ScriptedTransport(latency_s=0.02, respond=server)
        )
        store, _meta = loop.run_until_complete(engine.run())
    finally:
        loop.close()
    return store.to_frame()


@pytest.mark.parametrize("style", STYLES)
def test_header_pacing_reads_every_style_and_stays_under_the_quota(style: str) -> None:
    # 20 requests per 1 s window, 10 workers, 100 requests. Unpaced, the workers send as
    # fast as answers come and most are refused; paced by the remaining quota over the time
    # to reset, none is refused, in about the 5 windows the quota allows (the IETF styles
    # give resets in whole seconds, rounded up: near a window's end "1 s" for 0.1 s left
    # spaces the last few requests out, so those runs take up to 9 s).
    blind = _paced(style, rl.Unlimited())
    assert (blind.status == 429).sum() == 80  # 20 served in the first window, then refused
    paced = _paced(style, rl.HeaderPacing(safety=0.1))
    assert (paced.status == 200).sum() == 100
    assert paced.done_s.max() <= (9.0 if style.startswith("ietf") else 5.5)


def test_header_pacing_without_headers_holds_nothing_back() -> None:
    exp = _exp(requests=40, workers=10)
    paced = _run(exp.replace(strategy=rl.HeaderPacing()), ScriptedTransport(latency_s=0.02))
    blind = _run(exp, ScriptedTransport(latency_s=0.02))
    pd.testing.assert_series_equal(paced.admitted_s, blind.admitted_s)
    assert paced.admitted_s.max() == pytest.approx(0.06, abs=NS)


def test_header_pacing_after_a_429_without_quotas_waits_only_for_retry_after() -> None:
    # the server of headers=None: no quotas, only the status and Retry-After; everyone
    # pauses for the refusal's Retry-After and then goes on unpaced
    paced = _paced(None, rl.HeaderPacing())
    first = paced[paced.request_id < 30]  # sent at 0, 0.02, 0.04: the last ten refused
    assert (first.status == 429).sum() == 10
    assert not paced.admitted_s.between(0.05, 1.0).any()  # nobody sends in the pause
    blind = _paced(None, rl.Unlimited())
    assert blind.admitted_s.between(0.05, 1.0).sum() == 70  # unpaced: they go on, refused


def test_header_pacing_spaces_by_cost_under_a_tokens_quota() -> None:
    # 20 requests and 400 tokens per window; costs 10..50 (mean 30): the tokens bind (about
    # 13 requests a window). Unpaced, 87 of 100 are refused; paced by the tokens quota, one
    # (in the first window, where 10 went out before any answer)
    assert (_paced("openai", rl.Unlimited(), tokens=400.0).status == 429).sum() == 87
    paced = _paced("openai", rl.HeaderPacing(safety=0.1), tokens=400.0)
    assert (paced.status == 429).sum() == 1
    ok = paced[paced.status == 200]
    assert ok.groupby(ok.sent_s // 1.0).cost.sum().max() <= 400


def test_after_a_429_every_worker_waits_for_the_retry_after() -> None:
    # request 0 is refused at 0.1 s with Retry-After: 2; the other three workers' next
    # requests (ready at 0.1 s) wait until 2.1 s too, not only the refused one
    def respond(req: SentRequest) -> Any:
        if req.request_id == 0:
            return 429, {"Retry-After": "2"}
        return 200, {}

    exp = _exp(requests=8, workers=4, strategy=rl.HeaderPacing())
    df = _run(exp, ScriptedTransport(latency_s=0.1, respond=respond))
    later = df[df.request_id >= 4]
    assert later.admitted_s.to_numpy() == pytest.approx([2.1] * 4, abs=NS)
    blind = _run(exp.replace(strategy=rl.Unlimited()),
                 ScriptedTransport(latency_s=0.1, respond=respond))  # fmt: skip
    assert blind[blind.request_id >= 4].admitted_s.to_numpy() == pytest.approx([0.1] * 4, abs=NS)


@pytest.mark.parametrize("kind", ["TokenBucket", "SlidingWindow", "Adaptive"])
def test_a_reservation_counts_its_sleepers_until_their_slot(kind: str) -> None:
    # (the count a state sampler reads: no lock holds the waiters any more)
    async def main() -> list[int]:
        guard: Any = _burst_free(kind, 10.0).guard()
        tasks = [asyncio.ensure_future(guard.acquire("/get")) for _ in range(3)]
        counts = []
        for _ in range(3):
            await asyncio.sleep(0.05)
            counts.append(guard._waiting)
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)
        return [*counts, guard._waiting]

    assert run_virtual(main()) == [2, 1, 0, 0]  # slots at 0, 0.1, 0.2


def test_header_pacing_under_simulate_against_an_openai_shaped_server() -> None:
    # rl.simulate's server answers in OpenAI's headers; its reply carries them to the
    # guards, so HeaderPacing paces by tokens and requests per minute there too
    server = rl.LocalServer(profile=rl.profiles.openai(rpm=500, tpm=30_000))
    exp = _exp(requests=120, workers=20, cost=rl.Uniform(200, 2000), seed=1)
    blind = rl.simulate(exp, server, progress=False).df
    paced = rl.simulate(exp.replace(strategy=rl.HeaderPacing()), server, progress=False).df
    assert (blind.status == 429).sum() == 93
    assert (paced.status == 429).sum() == 0
    # within what the bucket allows: full at the start, 30,000 tokens a minute after
    assert paced.cost.sum() <= 30_000 + 30_000 * paced.done_s.max() / 60
