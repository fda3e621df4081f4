"""``make bench-smoke``: every benchmark runs at a tiny size and writes a well-formed report.

Never asserts speed (that is what ``make bench`` measures): only that each JSON exists, has
its keys, counts what it sent, and that every ratio is finite and positive.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_ALL = ROOT / "benchmarks" / "run_all.py"
NAMES = (
    "overhead", "rate", "timing", "memory", "recipe", "uvloop", "httpx", "instructions",
    "analysis", "simulate", "fidelity", "explore",
)  # fmt: skip
MACHINE_KEYS = {"platform", "python", "cpu_count", "packages", "date"}


def _positive(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-smoke")
    proc = subprocess.run(
        [sys.executable, str(RUN_ALL), "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "benchmark" in proc.stdout  # the table was printed
    for name in NAMES:
        assert (out / f"{name}.json").exists(), f"{name}.json missing:\n{proc.stdout[-4000:]}"
    # every benchmark run_all found (other bench_*.py files included) wrote its report
    return {path.stem: json.loads(path.read_text()) for path in sorted(out.glob("*.json"))}


def test_smoke_mode_is_recorded(reports: dict[str, Any]) -> None:
    for name in (n for n in NAMES if n != "analysis"):  # analysis: --rows, no --smoke
        assert reports[name].get("smoke") is True, name


def test_every_benchmark_script_wrote_a_report(reports: dict[str, Any]) -> None:
    scripts = {p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert set(NAMES) <= scripts <= set(reports)


def test_every_report_has_machine_info(reports: dict[str, dict[str, Any]]) -> None:
    for name, report in reports.items():
        machine = report["machine"]
        keys = MACHINE_KEYS if name != "analysis" else {"platform", "python", "cpu_count"}
        assert keys <= set(machine), (name, sorted(machine))
        assert machine["cpu_count"] >= 1


def test_overhead(reports: dict[str, dict[str, Any]]) -> None:
    r = reports["overhead"]
    assert _positive(r["ratio_unlimited"]) and _positive(r["ratio_connection_limit_50"])
    for kind, entry in r["servers"].items():
        assert kind in ("ratelab", "minimal")
        for line in entry["lines"].values():
            assert line["all_ok"], kind
            assert line["pairs"], kind
            for pair in line["pairs"]:
                assert pair["ratelab"]["rows"] == line["requests"]
                assert pair["ratelab"]["ok"] == pair["bare"]["ok"] == line["requests"]
                assert _positive(pair["ratio"])
        native = entry["native"]
        assert "skipped" in native or _positive(native["rate_per_s"])


def test_rate(reports: dict[str, dict[str, Any]]) -> None:
    results = reports["rate"]["results"]
    assert len(results) >= 2
    for r in results:
        assert r["rows"] == r["ok"] == r["requests"]
        assert r["workers"] >= 50
        assert _positive(r["steady_over_target"])
        assert r["max_sent_1s"] >= 1


def test_timing(reports: dict[str, dict[str, Any]]) -> None:
    r = reports["timing"]
    for side in ("ratelab", "bare"):
        assert r[side]["joined"] == r[side]["rows"] == r["requests"], side
        gap = r[side]["gap"]
        assert all(math.isfinite(gap[k]) for k in ("median_ms", "p99_ms")), side
        assert gap["p99_ms"] >= gap["median_ms"]
    # the server's service time sits inside the client's latency (same clock)
    assert r["ratelab"]["negative_legs"] == 0
    assert r["ratelab"]["service"]["median_ms"] >= 10.0


def test_memory(reports: dict[str, dict[str, Any]]) -> None:
    r = reports["memory"]
    assert r["ratelab"]["rows"] == r["ratelab"]["ok"] == r["requests"]
    assert r["bare"]["ok"] == r["requests"]
    for side in ("ratelab", "bare"):
        assert r[side]["rss_after"] >= r[side]["rss_before"] > 0
    assert math.isfinite(r["bytes_per_request"]) and r["bytes_per_request"] >= 0
    assert _positive(r["ratelab"]["frame_bytes_per_row"])


def test_recipe(reports: dict[str, dict[str, Any]]) -> None:
    r = reports["recipe"]
    assert r["same_request_count"]
    for key in ("wall_ratio", "rate_ratio", "steady_rate_ratio"):
        assert _positive(r[key]["median"]), key


def test_uvloop(reports: dict[str, dict[str, Any]]) -> None:
    r = reports["uvloop"]
    if "skipped" in r:  # only where uvloop is not installed (make test installs it)
        assert "uvloop not installed" in r["skipped"]
        return
    c = r["ceiling"]
    assert c["all_ok"] and c["rounds"]
    assert set(c["rounds"][0]) == {
        "bare/asyncio",
        "bare/uvloop",
        "ratelab/asyncio",
        "ratelab/uvloop",
    }
    for key in ("uvloop_speedup_bare", "uvloop_speedup_ratelab", "ratelab_over_bare_uvloop"):
        assert _positive(c[key]["median"]), key
    combos = {(m["rate_per_s_target"], m["loop"], m["limiter"]) for m in r["limiter_cpu"]}
    assert combos == {
        (rate, loop, lim)
        for rate in (1000, 5000)
        for loop in ("asyncio", "uvloop")
        for lim in ("aiolimiter", "ratelab")
    }
    for m in r["limiter_cpu"]:
        assert _positive(m["cpu_pct_of_core"]) and _positive(m["rate_over_target"])
    for m in r["rate_limited"]:
        assert m["ok"] == m["requests"], m
        assert _positive(m["steady_over_target"]) and _positive(m["cpu_us_per_request"])


def test_instructions(reports: dict[str, dict[str, Any]]) -> None:
    r = reports["instructions"]
    if "skipped" in r:  # no valgrind on this machine
        assert "valgrind not installed" in r["skipped"]
        return
    a, b = r["smoke_instructions"]  # the same tiny program counted twice
    assert a > 1_000_000 and abs(a - b) / a < 0.05


def test_analysis(reports: dict[str, dict[str, Any]]) -> None:
    r = reports["analysis"]
    assert r["rows"] == 2000
    for name in ("summary", "throughput", "concurrency", "windows"):
        assert _positive(r["results"][name]["ratio"]), name


def test_simulate(reports: dict[str, dict[str, Any]]) -> None:
    r = reports["simulate"]
    for name, entry in r["runs"].items():
        for run in entry["repeats"]:
            assert run["rows"] == run["server_log_rows"] == entry["requests"], name
            assert _positive(run["requests_per_cpu_s"]) and _positive(run["virtual_over_wall"])
    for key in ("requests_per_cpu_s", "minute_speedup", "day_speedup"):
        assert _positive(r[key]), key


def test_fidelity(reports: dict[str, dict[str, Any]]) -> None:
    r = reports["fidelity"]
    assert len(r["scenarios"]) >= 8
    for name, entry in r["scenarios"].items():
        assert entry["sim"]["rows"] >= entry["requests"] <= entry["real_median"]["rows"], name
        assert set(entry["compare"]) == {
            "steady_rate_per_s", "mean_in_flight", "limiter_wait_mean_s", "pool_wait_mean_s",
            "latency_p50_s", "count_429",
        }  # fmt: skip
        for metric, c in entry["compare"].items():
            assert c.get("ratio") is None or _positive(c["ratio"]), (name, metric)
    assert 0 < r["within_target"] <= r["figures"]
