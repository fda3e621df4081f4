"""Timing fidelity: client-measured latency minus the server's own service time, per request.

    python benchmarks/bench_timing.py [--smoke] [--out PATH] [--requests N] [--rate R]

A LocalServer with ``latency=Fixed(0.01)`` runs in this process (its own thread), so its
log and the client share ``time.monotonic()``. ratelab sends ``N`` requests open-loop at
``Constant(R)`` (default 200/s, 20 workers). Per request (joined on request_id + attempt):

    gap = (done_s - sent_s) - (departure_s - arrival_s)

i.e. what the client measured that the server did not spend serving: the send leg
(``arrival_s - sent_s``) plus the return leg (``done_s - departure_s``), which include
aiohttp's work, the loopback, and each side waiting for its event loop (the server thread
and the client share the GIL). Side by side, the same gap for a bare aiohttp loop sending
the same requests at the same times (stamping ``loop.time()`` around ``session.get`` +
``read()``): the difference is what ratelab's recording adds to the measured latency.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp
import numpy as np
import pandas as pd
from _common import default_out, headline, machine_info, parser, write_report

import ratelab as rl
from ratelab.client.transports.aiohttp_transport import ID_HEADER

SERVICE_S = 0.01
WORKERS = 20


def gap_stats(gap_s: np.ndarray) -> dict[str, float]:
    ms = gap_s * 1e3
    q50, q90, q99 = np.quantile(ms, [0.5, 0.9, 0.99])
    return {
        "median_ms": float(q50),
        "p90_ms": float(q90),
        "p99_ms": float(q99),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
        "min_ms": float(ms.min()),
    }


def _legs(client: pd.DataFrame, log: pd.DataFrame) -> dict[str, Any]:
    """Join client rows (request_id, attempt, sent_s, done_s) with the server log."""
    j = client.merge(
        log[["request_id", "attempt", "arrival_s", "departure_s"]],
        on=["request_id", "attempt"],
        how="inner",
    )
    latency = j["done_s"].to_numpy() - j["sent_s"].to_numpy()
    service = j["departure_s"].to_numpy() - j["arrival_s"].to_numpy()
    send = j["arrival_s"].to_numpy() - j["sent_s"].to_numpy()
    ret = j["done_s"].to_numpy() - j["departure_s"].to_numpy()
    return {
        "joined": len(j),
        "gap": gap_stats(latency - service),
        "send_leg": gap_stats(send),
        "return_leg": gap_stats(ret),
        "service": gap_stats(service),
        "latency": gap_stats(latency),
        "negative_legs": int(((send < 0) | (ret < 0)).sum()),
        "raw_gap_ms": np.round((latency - service) * 1e3, 4).tolist(),
    }


def run_ratelab(server: rl.LocalServer, n: int, rate: float) -> dict[str, Any]:
    exp = rl.Experiment(
        target=server.url, requests=n, workers=WORKERS, arrivals=rl.Constant(rate), seed=0
    )
    result = rl.run(exp, progress=False)
    log = result.server_log
    if log is None:  # the run did not attach it: read it ourselves, same clock and run token
        log = server.log(t0=result.meta["t0_monotonic"], run=result.meta["run"])
    df = result.df
    out = _legs(df[["request_id", "attempt", "sent_s", "done_s"]], log)
    out["rows"] = len(df)
    out["ok"] = int(((df["status"] == 200) & df["error"].isna()).sum())
    return out


async def _bare(url: str, n: int, rate: float, token: str) -> pd.DataFrame:
    """Open loop at ``rate``: a producer enqueues i at t0 + i / rate, workers send."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[int] = asyncio.Queue()
    sent = np.full(n, np.nan)
    done = np.full(n, np.nan)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            i = await q.get()
            try:
                sent[i] = loop.time()
                async with session.get(url, headers={ID_HEADER: f"{token}-{i}-1"}) as resp:
                    await resp.read()
                done[i] = loop.time()
            except Exception:
                pass
            finally:
                q.task_done()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(WORKERS)]
        t0 = loop.time()
        for i in range(n):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            q.put_nowait(i)
        await q.join()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return pd.DataFrame(
        {
            "request_id": np.arange(n, dtype=np.int64),
            "attempt": np.ones(n, np.int16),
            "sent_s": sent,
            "done_s": done,
        }
    )


def run_bare(server: rl.LocalServer, n: int, rate: float) -> dict[str, Any]:
    token = secrets.token_hex(4)
    client = asyncio.run(_bare(server.url + "/get", n, rate, token))
    log = server.log(run=token)  # absolute monotonic times, like the bare client's
    out = _legs(client.dropna(), log)
    out["rows"] = len(client)
    out["ok"] = int(client["done_s"].notna().sum())
    return out


def run(n: int, rate: float) -> dict[str, Any]:
    with rl.LocalServer(latency=rl.Fixed(SERVICE_S), seed=0) as server:
        rl.run(rl.Experiment(target=server.url, requests=20, workers=5), progress=False)
        lab = run_ratelab(server, n, rate)
        bare = run_bare(server, n, rate)
    report: dict[str, Any] = {
        "benchmark": "timing",
        "server": "ratelab.LocalServer in-process thread, latency Fixed(0.01)",
        "requests": n,
        "rate_per_s": rate,
        "workers": WORKERS,
        "ratelab": lab,
        "bare": bare,
        "gap_median_ms": lab["gap"]["median_ms"],
        "gap_p99_ms": lab["gap"]["p99_ms"],
        "gap_median_minus_bare_ms": lab["gap"]["median_ms"] - bare["gap"]["median_ms"],
        "gap_p99_minus_bare_ms": lab["gap"]["p99_ms"] - bare["gap"]["p99_ms"],
        "gap_median_over_service": lab["gap"]["median_ms"] / (SERVICE_S * 1e3),
        "headline": [
            headline("latency - service, median ms", round(lab["gap"]["median_ms"], 3), "info"),
            headline("latency - service, p99 ms", round(lab["gap"]["p99_ms"], 3), "info"),
            headline(
                "same, bare aiohttp: median / p99 ms",
                f"{bare['gap']['median_ms']:.3f} / {bare['gap']['p99_ms']:.3f}",
                "info",
            ),
        ],
        "machine": machine_info(),
    }
    return report


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=None)
    p.add_argument("--rate", type=float, default=200.0)
    args = p.parse_args(argv)
    n = args.requests or (100 if args.smoke else 1000)
    report = run(n, args.rate)
    report["smoke"] = args.smoke
    for who in ("ratelab", "bare"):
        r = report[who]
        print(
            f"{who:<8} joined {r['joined']}/{r['rows']}  gap median {r['gap']['median_ms']:.3f} ms"
            f"  p99 {r['gap']['p99_ms']:.3f} ms  (send leg {r['send_leg']['median_ms']:.3f},"
            f" return leg {r['return_leg']['median_ms']:.3f} ms)"
        )
    write_report(report, default_out("timing", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
