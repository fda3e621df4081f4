"""``Experiment.to_script()``: a standalone aiohttp + aiolimiter script equal to the run.

The unit tests parse the script (``ast``) and look for what each strategy needs; the real
run executes a generated script (a subprocess on this interpreter) against a LocalServer
beside ``rl.run`` of the same experiment and compares their rates and status counts.
"""

from __future__ import annotations

import ast
import csv
import random
import subprocess
import sys
from pathlib import Path

import pytest

import ratelab as rl
from ratelab.errors import ConfigError
from tests.experiment.custom_strategy import PerEndpointConcurrency

TARGET = "http://127.0.0.1:8080"


def script(strategy: rl.Strategy | None = None, **fields: object) -> tuple[str, ast.Module]:
    exp = rl.Experiment(target=TARGET, strategy=strategy, seed=1, **fields)  # type: ignore[arg-type]
    text = exp.to_script()
    return text, ast.parse(text)


def imported(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def calls(tree: ast.Module, name: str) -> list[ast.Call]:
    """Every call of ``name`` or ``x.name``."""
    return [
        n for n in ast.walk(tree) if isinstance(n, ast.Call)
        and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)
    ]  # fmt: skip


def keywords(call: ast.Call) -> dict[str, object]:
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}


def constant(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} = ... in the script")


def test_a_plain_script_imports_no_ratelab_and_has_the_experiment() -> None:
    _, tree = script(requests=123, workers=7, timeout_s=4.5, endpoints={"/a": 3, "/b": 1})
    assert imported(tree) <= {"asyncio", "collections", "contextlib", "csv", "email", "random",
                              "sys", "time", "aiohttp", "aiolimiter"}  # fmt: skip
    assert constant(tree, "REQUESTS") == 123 and constant(tree, "WORKERS") == 7
    assert constant(tree, "ENDPOINTS") == {"/a": 3.0, "/b": 1.0}
    assert constant(tree, "TARGET") == TARGET and constant(tree, "SEED") == 1
    (timeout,) = calls(tree, "ClientTimeout")
    assert ast.unparse(timeout) == "aiohttp.ClientTimeout(total=TIMEOUT_S)"
    assert constant(tree, "TIMEOUT_S") == 4.5
    # errors surfaced: the workers are gathered with return_exceptions, each attempt in a try
    (gather,) = calls(tree, "gather")
    assert keywords(gather) == {"return_exceptions": True}
    assert any(isinstance(n, ast.Try) for n in ast.walk(tree))
    assert constant(tree, "MAX_ATTEMPTS") == 1  # no Retry: one attempt


def test_unlimited_gets_an_unlimited_connector_and_no_gate() -> None:
    _, tree = script(rl.Unlimited())
    (conn,) = calls(tree, "TCPConnector")
    assert keywords(conn) == {"limit": 0, "limit_per_host": 0}
    assert not calls(tree, "AsyncLimiter") and not calls(tree, "Semaphore")


def test_rate_limit_connection_limit_and_semaphores() -> None:
    strategy = (
        rl.RateLimit(5, period_s=0.5) + rl.ConnectionLimit(10, per_host=4) + rl.Concurrency(3)
        + rl.Concurrency(2, endpoint="/slow") + rl.Concurrency(1, endpoint="/slow")
    )  # fmt: skip
    text, tree = script(strategy, endpoints=["/slow", "/fast"])
    (limiter,) = calls(tree, "AsyncLimiter")
    assert [ast.literal_eval(a) for a in limiter.args] == [5.0, 0.5]
    (conn,) = calls(tree, "TCPConnector")
    assert keywords(conn) == {"limit": 10, "limit_per_host": 4}
    sems = calls(tree, "Semaphore")
    assert sorted(ast.literal_eval(s.args[0]) for s in sems) == [1, 3]  # /slow: the tighter
    # the per-endpoint semaphores are a dict keyed by endpoint, used by every request
    assert "endpoint_semaphores = {'/slow': asyncio.Semaphore(1)}" in text
    assert "async with endpoint_semaphores.get(path, NO_GATE):" in text
    # the gates in the strategy's order: limiter, global semaphore, then per endpoint
    withs = [ast.unparse(w.items[0].context_expr) for w in ast.walk(tree)
             if isinstance(w, ast.AsyncWith)]  # fmt: skip
    gates = [w for w in withs if w.startswith(("gate_", "endpoint_"))]
    assert gates == ["gate_1", "gate_2", "endpoint_semaphores.get(path, NO_GATE)"]


def test_token_bucket_and_sliding_window() -> None:
    _, tree = script(rl.TokenBucket(20, burst=5) + rl.SlidingWindow(7, window_s=2.0))
    (limiter,) = calls(tree, "AsyncLimiter")
    assert [ast.literal_eval(a) for a in limiter.args] == [5.0, 0.25]  # 5 per 0.25 s = 20/s
    assert any(isinstance(n, ast.ClassDef) and n.name == "SlidingWindow" for n in tree.body)
    (window,) = calls(tree, "SlidingWindow")
    assert [ast.literal_eval(a) for a in window.args] == [7, 2.0]


def test_retry_honours_retry_after_with_backoff() -> None:
    r = rl.Retry(max_attempts=6, backoff_s=0.2, max_backoff_s=3.0, statuses=(429, 503))
    _, tree = script(r)
    assert constant(tree, "MAX_ATTEMPTS") == 6 and constant(tree, "BACKOFF_S") == 0.2
    assert constant(tree, "MAX_BACKOFF_S") == 3.0 and constant(tree, "RETRY_STATUSES") == (
        429, 503,
    )  # fmt: skip
    assert constant(tree, "JITTER") == "full" and constant(tree, "HONOR_RETRY_AFTER") is True
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    ns: dict[str, object] = {"HONOR_RETRY_AFTER": True, "MAX_BACKOFF_S": 3.0,
                             "BACKOFF_S": 0.2, "JITTER": None}  # fmt: skip
    exec(compile(ast.Module([fns["backoff_s"], fns["retry_after_s"]], []), "s", "exec"), ns)
    backoff, parse = ns["backoff_s"], ns["retry_after_s"]
    assert parse("2") == 2.0 and parse(None) is None  # type: ignore[operator]
    assert backoff(1, 2.0, None) == 2.0 and backoff(1, 99.0, None) == 3.0  # type: ignore[operator]
    assert backoff(3, None, None) == pytest.approx(0.8)  # type: ignore[operator]
    # with a jitter the script's waits are ratelab's own Retry.backoff, draw for draw
    for jitter in ("full", "equal", None):
        ns["JITTER"] = jitter
        retry = rl.Retry(backoff_s=0.2, max_backoff_s=3.0, jitter=jitter)
        for attempt, after in ((1, None), (3, None), (1, 2.0), (2, 99.0)):
            draw = random.Random(attempt)
            expected = retry.backoff(attempt, after, random.Random(attempt).random())
            assert backoff(attempt, after, draw) == pytest.approx(expected), (jitter, attempt)
    _, tree = script(rl.Retry(honor_retry_after=False, jitter=None))
    assert constant(tree, "HONOR_RETRY_AFTER") is False and constant(tree, "JITTER") is None


def test_costs_and_token_limits_are_refused() -> None:
    with pytest.raises(rl.ConfigError, match="unit='requests'"):
        script(rl.RateLimit(100, period_s=60, unit="tokens"), cost=10)
    with pytest.raises(rl.ConfigError, match="cost"):
        script(rl.RateLimit(5), cost=rl.Uniform(1, 10))


def test_open_loop_think_time_methods_and_secrets() -> None:
    text, _ = script(
        arrivals=rl.Poisson(12.0), think_time=rl.LogNormal(0.1, 0.5), method="POST",
        json={"a": 1}, headers={"X-Api-Key": "s3cret", "Accept": "text/plain"},
        auth=("me", "pw"), endpoints={"/post": 1.0, "/put": {"method": "PUT", "json": [2]}},
        loop="uvloop",
    )  # fmt: skip
    assert "s3cret" not in text and "'pw'" not in text  # secrets never written down
    assert "os.environ['HEADER_X_API_KEY']" in text and "os.environ['API_PASSWORD']" in text
    assert "rng.expovariate(12.0)" in text and "rng.lognormvariate(math.log(0.1), 0.5)" in text
    assert "async def produce" in text and "uvloop.run(main(" in text
    assert "'/put': {'method': 'PUT', 'headers': {'X-Api-Key': " in text
    assert "'json': [2]}" in text  # the endpoint's own body
    assert "'/post': {'method': 'POST'" in text and "'json': {'a': 1}" in text


@pytest.mark.parametrize(
    ("strategy", "name"),
    [
        (rl.Adaptive(), "Adaptive"),
        (rl.RateLimit(5) + rl.SharedRateLimit(5), "SharedRateLimit"),
        (PerEndpointConcurrency(2), "PerEndpointConcurrency"),
    ],
)
def test_strategies_a_script_cannot_express_are_named(strategy: rl.Strategy, name: str) -> None:
    exp = rl.Experiment(target=TARGET, strategy=strategy)
    with pytest.raises(ConfigError, match=rf"{name} cannot be written") as info:
        exp.to_script()
    assert info.value.parameter == "strategy"


def test_a_request_function_and_processes_are_refused() -> None:
    with pytest.raises(ConfigError, match="request function") as info:
        rl.Experiment(target=TARGET, request=send_it).to_script()
    assert info.value.parameter == "request"
    with pytest.raises(ConfigError, match="one process") as info:
        rl.Experiment(target=TARGET, processes=2).to_script()
    assert info.value.parameter == "processes"


async def send_it(ctx: object) -> object:  # a request function (never called)
    raise NotImplementedError


# --- a generated script against a real LocalServer, beside ratelab's run -------------------

REQUESTS = 140
SKIP = 40  # past aiolimiter's initial burst of 20 (and a second of 20/s after it)


def steady_rate_per_s(times: list[float]) -> float:
    """Attempts per second between the SKIP-th admission and the last one."""
    t = sorted(times)
    return (len(t) - 1 - SKIP) / (t[-1] - t[SKIP])


def statuses(values: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def server() -> rl.LocalServer:  # a fresh server each time: the same fault draws in order
    return rl.LocalServer(seed=5, faults=rl.Faults(error_rate=0.1, seed=5))


@pytest.mark.timeout(120)
def test_a_generated_script_runs_like_ratelab(tmp_path: Path) -> None:
    """A RateLimit(20) dominates (no latency, 10 workers), 10% of attempts fail with 500 and
    are retried: the script's steady rate is within 5% of ratelab's (the limiter's rate
    holds under CPU load: it catches up on elapsed time) and the status counts are equal
    (the server's seeded fault draws go to the k-th arriving attempt, whichever it is)."""
    strategy = rl.RateLimit(20) + rl.Retry(max_attempts=8, backoff_s=0.02)
    with server() as srv:
        exp = rl.Experiment(target=srv.url, requests=REQUESTS, workers=10, seed=5,
                            strategy=strategy)  # fmt: skip
        ours = rl.run(exp, progress=False).df
    path, records = tmp_path / "script.py", tmp_path / "records.csv"
    with server() as srv:
        path.write_text(exp.replace(target=srv.url).to_script())
        proc = subprocess.run([sys.executable, str(path), str(records)], capture_output=True,
                              text=True, timeout=100)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with records.open() as f:
        rows = list(csv.DictReader(f))
    assert not any(r["error"] for r in rows), [r["error"] for r in rows if r["error"]][:3]
    theirs = statuses([int(r["status"]) for r in rows])
    assert theirs == statuses(ours.status.tolist())
    assert theirs[200] == REQUESTS and theirs.get(500, 0) > 0  # retries were exercised
    rate = steady_rate_per_s([float(r["admitted_s"]) for r in rows])
    expected = steady_rate_per_s(ours.admitted_s.tolist())
    assert rate == pytest.approx(expected, rel=0.05)
    assert expected == pytest.approx(20, rel=0.05)


@pytest.mark.timeout(120)
def test_an_open_loop_script_keeps_its_schedule_and_its_sliding_window(tmp_path: Path) -> None:
    """Open loop (a producer at the arrival times), think time, a SlidingWindow and a
    per-endpoint semaphore, run for real: every request finishes, none starts before its
    arrival, and 40 requests through SlidingWindow(10, window_s=0.5) take at least 1.5 s."""
    n, rate_per_s = 40, 40.0
    strategy = rl.SlidingWindow(10, window_s=0.5) + rl.Concurrency(2, endpoint="/get")
    path, records = tmp_path / "script.py", tmp_path / "records.csv"
    with rl.LocalServer(seed=1) as srv:
        exp = rl.Experiment(
            target=srv.url, requests=n, workers=8, seed=1, strategy=strategy,
            arrivals=rl.Constant(rate_per_s), think_time=rl.Fixed(0.01),
            endpoints=["/get", "/bytes/10"],
        )  # fmt: skip
        path.write_text(exp.to_script())
        proc = subprocess.run([sys.executable, str(path), str(records)], capture_output=True,
                              text=True, timeout=100)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with records.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and all(r["status"] == "200" and not r["error"] for r in rows)
    assert {r["endpoint"] for r in rows} == {"/get", "/bytes/10"}
    for r in rows:  # the worker took it after its arrival and slept the think time
        assert float(r["start_s"]) >= int(r["request"]) / rate_per_s + 0.01 - 1e-3
    admitted = sorted(float(r["admitted_s"]) for r in rows)
    assert admitted[-1] >= (n / 10 - 1) * 0.5
