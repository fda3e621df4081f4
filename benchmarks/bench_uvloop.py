"""Harness overhead under uvloop (optional): bench_overhead's Unlimited line on uvloop.

    python benchmarks/bench_uvloop.py [--smoke] [--out PATH]

Only when ``uvloop`` is importable (it is not a ratelab dependency and is not installed
for this); otherwise the report says ``"skipped": "uvloop not installed"``. With it: the
default-loop line and the uvloop line (``uvloop.EventLoopPolicy``, so ``rl.run``'s
``asyncio.Runner`` and the bare loop's ``asyncio.run`` both get a uvloop loop), each as
the median of per-pair ratios ratelab / bare, and uvloop's speed-up of each client.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from _common import default_out, headline, machine_info, parser, server_process, write_report


def run(n: int, pairs: int) -> dict[str, Any]:
    if importlib.util.find_spec("uvloop") is None:
        return {
            "benchmark": "uvloop",
            "skipped": "uvloop not installed",
            "headline": [headline("ratelab / bare on uvloop", "skipped: uvloop not installed")],
            "machine": machine_info(),
        }
    import uvloop  # type: ignore[import-not-found]
    from bench_overhead import measure_line

    import ratelab as rl

    lines: dict[str, Any] = {}
    with server_process("ratelab") as url:
        lines["default"] = measure_line(
            url, n=n, pairs=pairs, strategy=rl.Unlimited(), bare_limit=0
        )
        old = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        try:
            lines["uvloop"] = measure_line(
                url, n=n, pairs=pairs, strategy=rl.Unlimited(), bare_limit=0
            )
        finally:
            asyncio.set_event_loop_policy(old)
    d, u = lines["default"], lines["uvloop"]
    return {
        "benchmark": "uvloop",
        "uvloop": uvloop.__version__,
        "lines": lines,
        "ratio_default": d["ratio"]["median"],
        "ratio_uvloop": u["ratio"]["median"],
        "bare_speedup": u["bare_rate_per_s"]["median"] / d["bare_rate_per_s"]["median"],
        "ratelab_speedup": u["ratelab_rate_per_s"]["median"] / d["ratelab_rate_per_s"]["median"],
        "headline": [
            headline("ratelab / bare, default loop", round(d["ratio"]["median"], 3)),
            headline("ratelab / bare, uvloop", round(u["ratio"]["median"], 3)),
        ],
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    args = p.parse_args(argv)
    report = run(200 if args.smoke else 10_000, 1 if args.smoke else 5)
    report["smoke"] = args.smoke
    for row in report["headline"]:
        print(f"{row['metric']:<40} {row['value']}")
    write_report(report, default_out("uvloop", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
