"""Code to copy: an Experiment as a standalone script (:meth:`Experiment.to_script`).

    print(exp.to_script())      # plain aiohttp + aiolimiter + asyncio, no ratelab import

The script does what the run does, written the way one would write it by hand: a queue of
request numbers (filled up front, or by a producer at the arrival times in open loop), W
workers, the strategy's gates in the order written (``RateLimit`` → ``AsyncLimiter``,
``TokenBucket(r, burst=b)`` → ``AsyncLimiter(b, b / r)``, ``Concurrency`` → an
``asyncio.Semaphore``, endpoint-scoped ones in a dict keyed by endpoint, ``SlidingWindow``
→ a small sliding log), the connector's caps (``TCPConnector(limit=, limit_per_host=)``,
``limit=0`` when unlimited: aiohttp's default of 100 would be a hidden cap), a total
``ClientTimeout`` per attempt, ``Retry``'s loop (Retry-After honoured and capped, else an
exponential backoff with full jitter), think time, and failures kept as rows (a worker
that dies is reported, never lost: ``gather(..., return_exceptions=True)``).

What a plain script cannot express raises :class:`~ratelab.errors.ConfigError` naming it:
``Adaptive`` (ratelab's AIMD gate), ``SharedRateLimit`` (Redis), a custom strategy, a
request function (``request=``), ``processes > 1``. Secret headers and ``auth`` are read
from environment variables in the script, never written into it.

Not the same draws: the script picks endpoints and think times with Python's ``random``
seeded with the Experiment's seed, ratelab with numpy; the distributions are the same.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ratelab.errors import ConfigError
from ratelab.experiment.distributions import Exponential, Fixed, LogNormal, Uniform
from ratelab.experiment.request_options import is_secret_header
from ratelab.experiment.strategies import (
    Concurrency,
    ConnectionLimit,
    RateLimit,
    Retry,
    SlidingWindow,
    TokenBucket,
    Unlimited,
)

if TYPE_CHECKING:
    from ratelab.experiment.experiment import Experiment

__all__ = ["SUPPORTED", "to_script"]

#: The strategies a script can express (anything else is a ConfigError).
SUPPORTED = (
    Unlimited,
    RateLimit,
    TokenBucket,
    SlidingWindow,
    Concurrency,
    ConnectionLimit,
    Retry,
)

_SLIDING_WINDOW = '''

class SlidingWindow:
    """At most `limit` requests admitted in any `window_s` seconds (an exact sliding log);
    waiters go one at a time, in order."""

    def __init__(self, limit, window_s):
        self.limit, self.window_s = limit, window_s
        self.admitted = collections.deque()  # admission times, oldest first
        self.lock = asyncio.Lock()

    async def __aenter__(self):
        async with self.lock:
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                while self.admitted and self.admitted[0] <= now - self.window_s:
                    self.admitted.popleft()
                if len(self.admitted) < self.limit:
                    self.admitted.append(now)
                    return self
                await asyncio.sleep(self.admitted[0] + self.window_s - now)

    async def __aexit__(self, *exc_info):
        return None
'''


def _env_name(prefix: str, name: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()


def _check(exp: Experiment) -> None:
    for part in exp.strategy.parts:
        if not isinstance(part, SUPPORTED) or type(part) not in SUPPORTED:
            name = type(part).__name__
            raise ConfigError(
                "strategy", part,
                f"{name} cannot be written as a plain aiohttp + aiolimiter script; to_script() "
                f"expresses {', '.join(c.__name__ for c in SUPPORTED)}",
                f"Run {name} with rl.run(exp), or replace it (e.g. a RateLimit) to get a script",
            )  # fmt: skip
        if getattr(part, "unit", "requests") != "requests":
            raise ConfigError(
                "strategy", part,
                "a limit on tokens needs each request's cost, which to_script() does not draw: "
                "it expresses limits on requests (unit='requests')",
            )  # fmt: skip
    if exp.cost is not None:
        raise ConfigError(
            "cost", exp.cost,
            "to_script() does not draw costs or send X-Ratelab-Cost: use cost=None to get a "
            "script",
        )  # fmt: skip
    if exp.request is not None:
        raise ConfigError(
            "request", exp.request,
            "a request function cannot be written into a standalone script: to_script() "
            "expresses the endpoints, methods, headers and bodies of plain requests",
        )  # fmt: skip
    if exp.processes > 1:
        raise ConfigError(
            "processes", exp.processes,
            "to_script() writes one process: use processes=1 and run that many copies of the "
            "script, each with its share of the requests",
        )  # fmt: skip


def _think_time(exp: Experiment) -> str:
    t = exp.think_time
    if t is None:
        return "return 0.0  # no think time"
    if isinstance(t, Fixed):
        return f"return {t.value_s!r}  # {t!r}"
    if isinstance(t, Uniform):
        return f"return rng.uniform({t.low_s!r}, {t.high_s!r})  # {t!r}"
    if isinstance(t, Exponential):
        return f"return rng.expovariate(1 / {t.mean_s!r})  # {t!r}"
    if isinstance(t, LogNormal):
        return f"return rng.lognormvariate(math.log({t.median_s!r}), {t.sigma!r})  # {t!r}"
    raise ConfigError(
        "think_time", t, "to_script() writes Fixed, Uniform, Exponential and LogNormal think times"
    )


def _arrival(exp: Experiment) -> str:
    a = exp.arrivals
    if a is None:
        return ""
    name = type(a).__name__
    if name == "Constant":
        gap = f"1 / {a.rate_per_s!r}"
    elif name == "Poisson":
        gap = f"rng.expovariate({a.rate_per_s!r})"
    else:
        raise ConfigError("arrivals", a, "to_script() writes Constant and Poisson arrivals")
    return (
        f"\n\ndef arrival_gap_s(rng):\n    # {a!r}: open loop, the gap to the next arrival\n"
        f"    return {gap}\n\n\n"
    )


def _headers_code(headers: dict[str, str]) -> str:
    items = []
    for k, v in headers.items():
        value = f"os.environ[{_env_name('HEADER_', k)!r}]" if is_secret_header(k) else repr(v)
        items.append(f"{k!r}: {value}")
    return "{" + ", ".join(items) + "}"


def _request_options(exp: Experiment) -> tuple[str, list[str]]:
    """``OPTIONS = {path: {...}}``: what each endpoint's requests carry (method, headers,
    body), and the environment variables the script reads."""
    env: list[str] = []
    lines = []
    for path in exp.endpoints:
        o = exp.endpoint_options.get(path, {})
        parts = [f"'method': {o.get('method', exp.method)!r}"]
        headers = {**(exp.headers or {}), **o.get("headers", {})}
        if headers:
            parts.append(f"'headers': {_headers_code(headers)}")
            env += [_env_name("HEADER_", k) for k in headers if is_secret_header(k)]
        own_body = "json" in o or "data" in o
        json_body = o.get("json") if own_body else exp.json
        data_body = o.get("data") if own_body else exp.data
        if json_body is not None:
            parts.append(f"'json': {json_body!r}")
        if data_body is not None:
            parts.append(f"'data': {data_body!r}")
        lines.append(f"    {path!r}: {{{', '.join(parts)}}},")
    return "OPTIONS = {  # what each endpoint's requests carry\n" + "\n".join(lines) + "\n}\n", env


def _gates(exp: Experiment) -> tuple[list[str], list[tuple[str, str]], bool]:
    """(lines that build the gates inside main(), the ``async with`` expressions in the
    strategy's order, whether the SlidingWindow class is needed)."""
    build: list[str] = []
    gates: list[tuple[str, str]] = []  # (the async-with expression, what it stands for)
    sliding = False
    endpoint_caps: dict[str, int] = {}
    k = 0
    for part in exp.strategy.parts:
        if isinstance(part, RateLimit | TokenBucket | SlidingWindow) or (
            isinstance(part, Concurrency) and part.endpoint is None
        ):
            k += 1
            name = f"gate_{k}"
            if isinstance(part, RateLimit):
                code = f"AsyncLimiter({part.max_rate!r}, {part.period_s!r})"
            elif isinstance(part, TokenBucket):  # a bucket of `burst`, refilled at rate_per_s
                code = f"AsyncLimiter({part.burst!r}, {part.burst / part.rate_per_s!r})"
            elif isinstance(part, SlidingWindow):
                sliding = True
                code = f"SlidingWindow({part.limit!r}, {part.window_s!r})"
            else:
                code = f"asyncio.Semaphore({part.n!r})"
            build.append(f"    {name} = {code}  # {part!r}")
            gates.append((name, repr(part)))
        elif isinstance(part, Concurrency):  # endpoint-scoped: one dict, at its first place
            path = str(part.endpoint)
            if not endpoint_caps:
                gates.append(("endpoint_semaphores.get(path, NO_GATE)", "per endpoint"))
            old = endpoint_caps.get(path)
            endpoint_caps[path] = part.n if old is None else min(old, part.n)
    if endpoint_caps:
        items = ", ".join(f"{p!r}: asyncio.Semaphore({n})" for p, n in endpoint_caps.items())
        build.append(f"    endpoint_semaphores = {{{items}}}  # Concurrency(n, endpoint=...)")
    return build, gates, sliding


def _retry(exp: Experiment) -> str:
    retries = [p for p in exp.strategy.parts if isinstance(p, Retry)]
    if not retries:
        return (
            "MAX_ATTEMPTS = 1  # no retries\nRETRY_STATUSES = ()\nBACKOFF_S = 0.0\n"
            "MAX_BACKOFF_S = 0.0\nJITTER = None\nHONOR_RETRY_AFTER = False\n"
        )
    r = retries[-1]
    return (
        f"# {r!r}\n"
        f"MAX_ATTEMPTS = {r.max_attempts!r}  # in all, the first included\n"
        f"RETRY_STATUSES = {tuple(r.statuses)!r}  # and every exception\n"
        f"BACKOFF_S = {r.backoff_s!r}  # backoff_s * 2**(attempt - 1), capped\n"
        f"MAX_BACKOFF_S = {r.max_backoff_s!r}  # also caps a server's Retry-After\n"
        f"JITTER = {r.jitter!r}  # 'full': [0, cap); 'equal': [cap/2, cap); None: cap\n"
        f"HONOR_RETRY_AFTER = {r.honor_retry_after!r}\n"
    )


def to_script(exp: Experiment) -> str:
    """The standalone script for ``exp`` (see the module docstring)."""
    _check(exp)
    limit, per_host = exp.strategy.build_limits()
    build, gates, sliding = _gates(exp)
    options, env = _request_options(exp)
    auth = ""
    if exp.auth is not None:
        auth = "aiohttp.BasicAuth(os.environ['API_USER'], os.environ['API_PASSWORD'])"
        env += ["API_USER", "API_PASSWORD"]
    open_loop = exp.arrivals is not None
    arrival = _arrival(exp)
    think = _think_time(exp)
    needs_os = bool(env)
    needs_math = "math." in think

    # the request, inside the gates written in order (each `async with` indents once)
    body = []
    pad = "        "
    for g, why in gates:
        body.append(f"{pad}async with {g}:  # {why}")
        pad += "    "
    auth_arg = f", auth={auth}" if auth else ""
    body += [
        f"{pad}row['admitted_s'] = time.monotonic() - t0  # a pool wait, if any, comes next",
        f"{pad}opts = OPTIONS[path]",
        f"{pad}async with session.request(",
        f"{pad}    opts['method'], TARGET + path, headers=opts.get('headers'),",
        f"{pad}    json=opts.get('json'), data=opts.get('data'){auth_arg},",
        f"{pad}) as resp:",
        f"{pad}    await resp.read()",
        f"{pad}    return resp.status, resp.headers.get('Retry-After')",
    ]
    env_doc = ""
    if env:
        env_doc = "\nSecrets come from the environment: " + ", ".join(dict.fromkeys(env)) + ".\n"
    uvloop = exp.loop == "uvloop"
    client_note = ""
    if exp.client != "aiohttp":
        client_note = f"\n(The experiment sends with {exp.client}; this script with aiohttp.)\n"
    imports = ["asyncio", "collections", "contextlib", "csv", "random", "sys", "time"]
    imports += ["email.utils"] + (["math"] if needs_math else []) + (["os"] if needs_os else [])
    imports = sorted(set(imports))
    producer = ""
    if open_loop:
        producer = """
    async def produce():
        at = 0.0  # open loop: request i is queued at its arrival time
        for i in range(REQUESTS):
            delay = t0 + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(i)
            at += arrival_gap_s(rng)
        for _ in range(WORKERS):
            queue.put_nowait(None)  # one stop sign per worker
"""
    fill_lines = (
        "    tasks = [asyncio.create_task(produce())]\n"
        if open_loop
        else "    for i in range(REQUESTS):  # closed loop: every request queued up front\n"
        "        queue.put_nowait(i)\n"
        "    for _ in range(WORKERS):\n"
        "        queue.put_nowait(None)  # one stop sign per worker\n"
        "    tasks = []\n"
    )
    fill = "".join("    " + line + "\n" for line in fill_lines.splitlines())
    run = "uvloop.run" if uvloop else "asyncio.run"
    start = ("    import uvloop\n" if uvloop else "") + f"    {run}(main(*sys.argv[1:2]))"
    label = f"Experiment: {exp.name}" if exp.name else f"Strategy: {exp.strategy!r}"
    return f'''"""The experiment as a plain aiohttp + aiolimiter + asyncio script.

{label}
Written by ratelab's Experiment.to_script(); it needs only aiohttp and aiolimiter.
Run: python this_script.py [records.csv]  (prints a summary; writes one row per attempt)
{env_doc}{client_note}"""

{chr(10).join(f"import {m}" for m in imports)}

import aiohttp
from aiolimiter import AsyncLimiter

TARGET = {exp.target!r}
ENDPOINTS = {dict(exp.endpoints)!r}  # path -> weight
{options}REQUESTS = {exp.requests!r}
WORKERS = {min(exp.workers, max(exp.requests, 1))!r}
TIMEOUT_S = {exp.timeout_s!r}  # each attempt, in total (connect, send, read)
SEED = {exp.seed!r}
{arrival}{_retry(exp)}NO_GATE = contextlib.nullcontext()  # for endpoints without a semaphore
{_SLIDING_WINDOW if sliding else ""}

def think_time_s(rng):
    {think}


def retry_after_s(header):
    """A Retry-After header in seconds: delta-seconds or an HTTP date (None: unreadable)."""
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_s(attempt, retry_after, rng):
    """How long to wait before attempt `attempt + 1`."""
    cap = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (attempt - 1))
    if HONOR_RETRY_AFTER and retry_after is not None:
        if JITTER is None:
            return min(retry_after, MAX_BACKOFF_S)  # the server's word, capped
        # the server's word plus a random part, so the refused do not all return at once
        span = cap if JITTER == "full" else cap / 2
        return min(retry_after, MAX_BACKOFF_S - span) + rng.random() * span
    if JITTER is None:
        return cap
    return cap * rng.random() if JITTER == "full" else cap / 2 + cap * rng.random() / 2


async def main(csv_path=None):
    rng = random.Random(SEED)
    paths = rng.choices(list(ENDPOINTS), weights=list(ENDPOINTS.values()), k=REQUESTS)
{chr(10).join(build) if build else "    # no gates: the strategy bounds nothing before a request"}
    # limit=0 is unlimited (aiohttp's default of 100 would be a hidden cap)
    connector = aiohttp.TCPConnector(limit={limit}, limit_per_host={per_host})
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    queue = asyncio.Queue()
    records = []  # one dict per attempt: a failure is a row too
    t0 = time.monotonic()

    async def send(session, path, row):
        """One attempt: the gates in the strategy's order, then the request."""
{chr(10).join(body)}

    async def run_request(session, i):
        path = paths[i]
        attempt, pause = 1, think_time_s(rng)
        while True:
            if pause > 0:
                await asyncio.sleep(pause)  # think time, or a retry's backoff
            row = {{"request": i, "attempt": attempt, "endpoint": path,
                   "start_s": time.monotonic() - t0, "admitted_s": None,
                   "done_s": None, "status": 0, "error": ""}}
            records.append(row)
            retry_after = None
            try:
                row["status"], header = await send(session, path, row)
                retry_after = retry_after_s(header)
            except Exception as e:  # refused, reset, timed out: recorded, maybe retried
                row["error"] = type(e).__name__
            row["done_s"] = time.monotonic() - t0
            failed = row["error"] != "" or row["status"] in RETRY_STATUSES
            if not failed or attempt >= MAX_ATTEMPTS:
                return
            pause = backoff_s(attempt, retry_after, rng)
            attempt += 1

    async def worker(session):
        while (i := await queue.get()) is not None:
            await run_request(session, i)
{producer}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
{fill}        tasks += [asyncio.create_task(worker(session)) for _ in range(WORKERS)]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed_s = time.monotonic() - t0
    failures = [o for o in outcomes if isinstance(o, BaseException)]

    statuses = collections.Counter(r["status"] for r in records if not r["error"])
    errors = collections.Counter(r["error"] for r in records if r["error"])
    finished = sum(1 for r in records if not r["error"] and r["status"] < 400)
    print(f"{{len(records)}} attempts, {{finished}} of {{REQUESTS}} requests finished "
          f"in {{elapsed_s:.2f}} s ({{len(records) / elapsed_s:.1f}} attempts/s)")
    print("statuses:", dict(sorted(statuses.items())), "errors:", dict(errors))
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["request"])
            w.writeheader()
            w.writerows(records)
    for f in failures:  # a worker that died is reported, never lost
        print(f"a worker failed: {{f!r}}", file=sys.stderr)
    if failures:
        raise failures[0]
    return records


if __name__ == "__main__":
{start}
'''
