"""What a probe concludes, and the requests it sends to get there.

Every value is a :class:`Finding`: the value, how sure the probe is (``confidence``), the
evidence in words and, when the observations bound it, ``low`` and ``high``.

``"announced"``
    the server's headers state it (the IETF ``RateLimit-Policy`` gives the limit ``q`` and
    the window ``w``; every style gives the limit).
``"measured"``
    read off when the server's 429s started and stopped: the bounds hold given the statuses
    seen (times are the probe's send times; a round trip and the loop's lateness, a few ms
    on a busy machine, blur each one).
``"estimated"``
    derived under an assumption the evidence names (e.g. a reset read as a window length).
``"unknown"``
    the probe could not tell (value None); the evidence says why.

**From the headers** (:func:`from_headers`): the first response's quotas
(:func:`ratelab.protocol.header_reading.read_headers`) give the limit; the IETF style gives
the window. A second request shows how the reset moves: it grows by ``window / limit`` per
request under a token bucket (or GCRA), it does not under a window. Resets are rounded (to
whole seconds in most styles), so a bucket refilling faster than that looks like a window.

**From the behaviour** (:func:`from_behaviour`), one request at a time:

1. *Burst* until the first 429: the requests admitted are the capacity (a bucket's refill
   during the burst is taken off once its rate is known).
2. *Poll* until one passes: after a refusal with a precise ``Retry-After`` (milliseconds)
   wait that long plus :data:`MARGIN_S`; without one, search with growing waits
   (:data:`GROWTH`), so the return time is known to within that factor.
3. *Classify*: at once send one more (after the burst's own gap). Under a window the whole
   quota came back, and it passes; under a bucket one token came back, and it is refused.
4. *Window*: the time from the burst's first request to the first pass is the window. Then
   a split burst: 2 at that pass, ``limit - 2`` half a window later, and 4 one window after
   the pass. A fixed window (its counter opened at the pass) has its whole quota back: all
   4 pass; a sliding log has only the first 2 back. Then ``fixed_window`` or
   ``sliding_window``. Without a precise Retry-After the first return is only bracketed
   (within the search's factor); the check then starts inside the bracket and steps a
   quarter of it, and the window is the middle of the two brackets' overlap.
5. *Bucket*: poll for :data:`BUCKET_PASSES` passes, each right after a refusal: the passes
   come one token apart, so their spacing is ``window / limit`` (the lateness of the first
   and the last is all the error: it does not add up). ``token_bucket`` (GCRA admits exactly
   the same requests: no client can tell them apart). Without a precise Retry-After the
   first and the last timed pass are searched for finely (from half the spacing so far, in
   steps of a 25th of it) and those between coarsely; every pass is counted.

A budget spent part way keeps what was found (the algorithm, or more, is then unknown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ratelab.advice.probe_session import BudgetSpent, Observation, ProbeSession
from ratelab.protocol.header_reading import detect_styles, read_headers
from ratelab.protocol.quota import Quota
from ratelab.protocol.wall_clock import epoch_s

__all__ = ["CONFIDENCE", "Finding", "Findings", "from_behaviour", "from_headers"]

#: The confidence labels, surest first (see the module doc).
CONFIDENCE = ("announced", "measured", "estimated", "unknown")
#: Waited beyond a precise Retry-After.
MARGIN_S = 0.001
#: Without a precise Retry-After, each wait is this much longer than the last.
GROWTH = 1.25
#: Passes timed to measure a bucket's refill rate.
BUCKET_PASSES = 5
#: Consecutive failed requests (no HTTP answer) after which the probe stops.
MAX_ERRORS = 3


@dataclass(frozen=True, slots=True)
class Finding:
    """One inferred value and how sure the probe is of it (see the module doc)."""

    name: str
    value: Any
    confidence: str
    evidence: str
    low: float | None = None
    high: float | None = None


@dataclass
class Findings:
    """What a probe found: the main quota's findings, every quota the headers announced,
    and how the probe got there (``source``: ``"headers"``, ``"behaviour"`` or ``"none"``)."""

    limit: Finding
    window_s: Finding
    algorithm: Finding
    unit: Finding
    source: str
    quotas: tuple[Quota, ...] = ()


def _unknown(name: str, why: str) -> Finding:
    return Finding(name, None, "unknown", why)


class _Unreachable(Exception):
    pass


async def _send(s: ProbeSession, phase: str, errors: list[int]) -> Observation:
    o = await s.send(phase)
    if o.error is not None:
        errors[0] += 1
        if errors[0] >= MAX_ERRORS:
            raise _Unreachable(o.error)
    else:
        errors[0] = 0
    return o


async def _until_ok(
    s: ProbeSession, last: Observation, phase: str, guess_s: float, errors: list[int], *,
    first_s: float | None = None, growth: float = GROWTH,
) -> Observation:  # fmt: skip
    """Poll until a request passes (see the module doc, step 2). Without a precise
    Retry-After the first wait is ``first_s`` (default ``guess_s``), then ``guess_s``
    growing by ``growth`` each time (a whole-second Retry-After caps each wait)."""
    o, step = last, max(guess_s, 1e-3)
    wait = step if first_s is None else max(first_s, 0.0)
    while not o.ok:
        if o.precise and o.retry_after_s is not None:
            wait = o.retry_after_s + MARGIN_S
        elif o.retry_after_s is not None:  # whole seconds, rounded up: an upper bound
            wait = min(wait, o.retry_after_s)
        await s.sleep_until(o.done_s + wait)
        o = await _send(s, phase, errors)
        wait, step = step, step * growth
    return o


def _s(x: float) -> str:
    return f"{x:.3g} s" if x < 100 else f"{x:.0f} s"


# --- from the headers ----------------------------------------------------------------------

#: The finest step a style writes its resets in (seconds).
_RESOLUTION_S = {"openai": 0.001}
#: Styles that write a reset as a moment rounded up to a whole second: read back against
#: the client's clock, a reset of w whole seconds reads as up to w + 1.
_ABSOLUTE = ("github", "anthropic")


def _main_quota(quotas: list[Quota]) -> Quota:
    of_requests = [q for q in quotas if q.unit == "requests" and not math.isnan(q.limit)]
    return (of_requests or [q for q in quotas if not math.isnan(q.limit)] or quotas)[0]


async def from_headers(s: ProbeSession, first: Observation, quotas: list[Quota]) -> Findings:
    """Read the limit (and the window, when announced) from ``first``'s headers; one more
    request tells a bucket's growing reset from a window's."""
    style = ", ".join(detect_styles(first.headers))
    q1 = _main_quota(quotas)
    res = _RESOLUTION_S.get(style, 1.0)
    limit = Finding("limit", q1.limit, "announced", f"{style} headers: limit {q1.limit:g}")
    unit = Finding("unit", q1.unit, "announced", f"{style} headers: quota {q1.name!r}")
    q2 = None
    try:
        second = await s.send("headers")
    except BudgetSpent:
        second = None
    if second is not None and second.error is None:
        again = [q for q in read_headers(second.headers, now_epoch_s=epoch_s(s.loop))]
        q2 = next((q for q in again if q.name == q1.name), None)
    grows = None
    if q1.reset_s is not None and q2 is not None and q2.reset_s is not None:
        spent = q1.remaining - q2.remaining
        if spent > 0:
            grows = (q2.reset_s - q1.reset_s) / spent
    if grows is not None and grows >= res / 2:
        algorithm = Finding(
            "algorithm", "token_bucket", "estimated",
            f"the reset grew by {_s(grows)} per request: a token bucket or GCRA (they admit "
            "the same requests)",
        )  # fmt: skip
    else:
        why = "only one response" if q2 is None else "the reset did not grow per request"
        algorithm = _unknown(
            "algorithm",
            f"{why} ({style} resets are in steps of {_s(res)}): a fixed or sliding window, "
            "or a bucket refilling faster than that",
        )
    if q1.window_s is not None:
        window = Finding("window_s", q1.window_s, "announced", f"{style}: w={q1.window_s:g}")
    elif algorithm.value == "token_bucket" and grows is not None:
        w = q1.limit * grows
        window = Finding(
            "window_s", w, "estimated",
            f"limit x the reset's growth per request ({q1.limit:g} x {_s(grows)}), resets in "
            f"steps of {_s(res)}",
        )  # fmt: skip
    elif q1.reset_s is not None:
        w = max(res, float(math.floor(q1.reset_s))) if style in _ABSOLUTE else q1.reset_s
        window = Finding(
            "window_s", w, "estimated",
            f"the first response's reset ({_s(q1.reset_s)}, in steps of {_s(res)}), read as "
            "the window that request opened",
        )  # fmt: skip
    else:
        window = _unknown("window_s", f"{style} headers give no window and no reset")
    return Findings(limit, window, algorithm, unit, "headers", tuple(quotas))


# --- from the behaviour --------------------------------------------------------------------


async def from_behaviour(s: ProbeSession, first: Observation, auto_budget: bool) -> Findings:
    """Find the limit, window and family from when 429s start and stop (module doc)."""
    errors = [0 if first.error is None else 1]
    unit = Finding("unit", "requests", "estimated", "counted in requests: each probe is one")
    try:
        return await _behaviour(s, first, auto_budget, errors, unit)
    except _Unreachable as e:
        why = f"{MAX_ERRORS} requests in a row failed ({e})"
    except BudgetSpent:
        why = f"the budget ({s.budget} requests) ran out"
    return _partial(s, why, unit)


def _partial(s: ProbeSession, why: str, unit: Finding) -> Findings:
    """What a probe cut short can still say: no 429 in n admitted requests bounds the limit."""
    obs = s.observations
    ok = [o for o in obs if o.ok]
    refused = next((i for i, o in enumerate(obs) if o.refused), None)
    if refused is None:
        limit = Finding(
            "limit", None, "unknown",
            f"{why} before any 429: {len(ok)} requests passed, so the limit is at least that "
            "(or the server refills faster than one request at a time can use)",
            low=float(len(ok)),
        )  # fmt: skip
    else:
        n = sum(1 for o in obs[:refused] if o.ok)
        limit = Finding("limit", n, "estimated", f"{n} passed before the first 429; then {why}")
    return Findings(
        limit,
        _unknown("window_s", f"{why} before the capacity came back"),
        _unknown("algorithm", f"{why} before the capacity came back"),
        unit,
        "behaviour" if obs else "none",
    )


async def _behaviour(
    s: ProbeSession, first: Observation, auto_budget: bool, errors: list[int], unit: Finding
) -> Findings:
    # 1. the burst
    burst = [first] if first.ok else []
    o = first
    while not o.refused:
        o = await _send(s, "burst", errors)
        if o.ok:
            burst.append(o)
    refusal = o
    n_ok = len(burst)
    if n_ok == 0:
        raise _Unreachable("the first request was refused: the quota is in use")
    if auto_budget:  # about three windows' worth, now that one is known
        s.budget = min(s.budget, s.used + 2 * n_ok + 12)
    t1 = burst[0].sent_s
    pace = burst[1].sent_s - t1 if n_ok > 1 else 0.0
    # 2. the first pass
    s1 = await _until_ok(s, refusal, "return", max(refusal.sent_s - t1, pace, 1e-3), errors)
    before = [x for x in s.observations if x.sent_s < s1.sent_s and not x.ok]
    # 3. one more at once
    await s.sleep_until(s1.sent_s + pace + MARGIN_S)
    o2 = await _send(s, "classify", errors)
    if n_ok <= 1:
        return _one(s, s1, t1, before, unit)
    if o2.ok:
        return await _window(s, burst, s1, before, errors, unit)
    return await _bucket(s, burst, refusal, s1, o2, errors, unit)


def _one(s: ProbeSession, s1: Observation, t1: float, before: list[Observation],
         unit: Finding) -> Findings:  # fmt: skip
    w = s1.sent_s - t1
    low = before[-1].sent_s - t1 if before else None
    return Findings(
        Finding("limit", 1, "measured", "one request passed, the next was refused", 1, 1),
        Finding("window_s", w, "measured", f"the second pass came {_s(w)} after the first", low, w),
        _unknown("algorithm", "with a limit of 1 every family admits the same requests"),
        unit,
        "behaviour",
    )


async def _window(
    s: ProbeSession, burst: list[Observation], s1: Observation, before: list[Observation],
    errors: list[int], unit: Finding,
) -> Findings:  # fmt: skip
    n_ok, t1 = len(burst), burst[0].sent_s
    w1 = s1.sent_s - t1
    low1 = max((x.sent_s + (x.retry_after_s or 0.0) * x.precise for x in before), default=t1)
    limit = Finding(
        "limit", n_ok, "measured",
        f"{n_ok} requests passed in a burst of {_s(burst[-1].sent_s - t1)} before the first "
        "429, and they could all pass again a window later",
        n_ok, n_ok,
    )  # fmt: skip
    window = Finding(
        "window_s", w1, "measured",
        f"the quota came back {_s(w1)} after the burst's first request",
        low1 - t1, w1,
    )  # fmt: skip
    if n_ok < 3:
        algo = _unknown("algorithm", f"a limit of {n_ok} leaves no room for a split burst")
        return Findings(limit, window, algo, unit, "behaviour")
    # 4. the split burst: 2 at s1 (sent), limit - 2 half a window later, 4 a window after s1
    try:
        n_b, passed, window = await _split(s, s1, w1, low1 - t1, n_ok, errors, window)
    except BudgetSpent:
        why = f"the budget ({s.budget} requests) ran out during the split burst"
        return Findings(limit, window, _unknown("algorithm", why), unit, "behaviour")
    split = f"2 sent at the pass, {n_b} half a window later; one window after the pass"
    if passed >= 3:
        algo = Finding(
            "algorithm", "fixed_window", "measured",
            f"{split}, {passed} of 4 passed: the whole quota came back at once (a fixed window)",
        )  # fmt: skip
    else:
        algo = Finding(
            "algorithm", "sliding_window", "measured",
            f"{split}, only {passed} of 4 passed: each request stops counting one window "
            "after it (a sliding log)",
        )  # fmt: skip
    return Findings(limit, window, algo, unit, "behaviour")


async def _split(
    s: ProbeSession, s1: Observation, w1: float, lo1: float, n_ok: int, errors: list[int],
    window: Finding,
) -> tuple[int, int, Finding]:  # fmt: skip
    """The split burst after the pass ``s1`` (module doc, step 4): (sent half a window
    later and admitted, passed of 4 a window after ``s1``, the window, refined)."""
    await s.sleep_until(s1.sent_s + w1 / 2)
    n_b = 0
    for _ in range(n_ok - 2):
        if not (await _send(s, "split", errors)).ok:
            break
        n_b += 1
    precise = w1 - lo1 <= max(0.02 * w1, 4 * MARGIN_S)
    if precise:  # look once, just after the return
        start, step = w1 + MARGIN_S, w1 / 20
    else:  # look again, more finely, inside the bracket
        step = (w1 - lo1) / 4
        start = lo1 + step
    await s.sleep_until(s1.sent_s + start)
    passed, first_pass, late = 0, None, None
    for _ in range(4):
        o = await _send(s, "check", errors)
        if not o.ok and passed == 0:
            late = o
            o = await _until_ok(s, o, "check", step, errors, growth=1.1)
        if not o.ok:
            break
        if first_pass is None:
            first_pass = o
        passed += 1
    if first_pass is not None and first_pass.sent_s - s1.sent_s > w1 + MARGIN_S:
        # the first window had opened before the burst: the second, opened by s1, is clean
        hi2 = first_pass.sent_s - s1.sent_s
        refused = [x for x in s.observations if x.phase == "check" and not x.ok]
        lo2 = max((x.sent_s for x in refused if x.sent_s < first_pass.sent_s),
                  default=s1.sent_s) - s1.sent_s  # fmt: skip
        value = hi2 if precise else (lo2 + hi2) / 2
        window = Finding(
            "window_s", value, "measured",
            f"the quota came back {_s(hi2)} after the pass that opened the second window "
            f"(the first came back after {_s(w1)}: that window had opened before the probe)",
            lo2, hi2,
        )  # fmt: skip
    elif not precise and first_pass is not None:
        hi2 = min(w1, first_pass.sent_s - s1.sent_s)
        lo2 = max(lo1, late.sent_s - s1.sent_s) if late is not None else lo1
        window = Finding(
            "window_s", (lo2 + hi2) / 2, "measured",
            f"no precise Retry-After: the quota came back between {_s(lo2)} and {_s(hi2)} "
            "after a window's first request (twice bracketed; the middle)",
            lo2, hi2,
        )  # fmt: skip
    return n_b, passed, window


async def _next_pass(
    s: ProbeSession, last: Observation, gap_s: float, fine: bool, errors: list[int]
) -> tuple[Observation, bool]:
    """The next pass after the refusal ``last`` and whether it is bracketed (a precise
    Retry-After, or a fine search that was refused once before it passed)."""
    if last.precise:
        return await _until_ok(s, last, "refill", gap_s, errors), True
    if fine:
        first_s, step_s, growth = 0.5 * gap_s, gap_s / 25, 1.1
    else:
        first_s, step_s, growth = 0.8 * gap_s, gap_s / 8, GROWTH
    before = s.used
    o = await _until_ok(s, last, "refill", step_s, errors, first_s=first_s, growth=growth)
    return o, fine and s.used - before > 1


async def _bucket(
    s: ProbeSession, burst: list[Observation], refusal: Observation, s1: Observation,
    o2: Observation, errors: list[int], unit: Finding,
) -> Findings:  # fmt: skip
    # passes, and whether each is bracketed: found right after a refusal a small step before
    # it (so its token came at most a step earlier); only those start and end the timing
    passes: list[tuple[Observation, bool]] = [(s1, refusal.precise)]
    last, gap = o2, max(s1.sent_s - refusal.sent_s, 1e-3)
    try:
        while s.left >= 2:
            marks = [i for i, (_, bracketed) in enumerate(passes) if bracketed]
            if len(marks) >= 2 and marks[-1] - marks[0] >= BUCKET_PASSES - 1:
                break
            if len(passes) >= 2:
                gap = (passes[-1][0].sent_s - passes[0][0].sent_s) / (len(passes) - 1)
            fine = not marks or len(passes) >= marks[0] + BUCKET_PASSES - 1
            passes.append(await _next_pass(s, last, gap, fine, errors))
            last = await _send(s, "refill", errors)
            while last.ok:
                passes.append((last, False))
                last = await _send(s, "refill", errors)
    except BudgetSpent:
        pass
    marks = [i for i, (_, bracketed) in enumerate(passes) if bracketed]
    first, end = (marks[0], marks[-1]) if len(marks) >= 2 else (0, len(passes) - 1)
    if end <= first:
        return _partial(s, "the budget ran out before a second pass", unit)
    span = passes[end][0].sent_s - passes[first][0].sent_s
    rate = (end - first) / span
    burst_s = refusal.sent_s - burst[0].sent_s
    n_ok = len(burst)
    cap = max(1, round(n_ok - rate * burst_s + 0.5))
    w = cap / rate
    limit = Finding(
        "limit", cap, "measured",
        f"{n_ok} passed in a burst of {_s(burst_s)} before the first 429, less what refilled "
        f"meanwhile ({rate * burst_s:.2g} at {rate:.3g}/s)",
        max(1.0, n_ok - rate * burst_s), n_ok - rate * burst_s + 1,
    )  # fmt: skip
    window = Finding(
        "window_s", w, "measured",
        f"capacity came back one request at a time: {end - first + 1} passes over {_s(span)} "
        f"({rate:.3g}/s); window = limit / rate",
    )  # fmt: skip
    algo = Finding(
        "algorithm", "token_bucket", "measured",
        "after the burst capacity came back one request at a time (a token bucket or GCRA: "
        "they admit exactly the same requests)",
    )  # fmt: skip
    return Findings(limit, window, algo, unit, "behaviour")
