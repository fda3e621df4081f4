"""The ``ratelab`` command line, through ``ratelab.cli.main.main`` and once as a real process.

Every experiment here runs against an embedded LocalServer on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from ratelab.analysis.result import load
from ratelab.cli.main import main
from ratelab.cli.tables import format_table

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = """\
name = "tiny"
requests = 12
workers = 3
think_time = "uniform:0.0,0.005"
strategy = [{type = "RateLimit", max_rate = 400}, {type = "ConnectionLimit", limit = 2}]
seed = 1

[server]
latency = "fixed:0.005"
seed = 1
"""


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two runs written by ``ratelab run`` (the second without a connection cap)."""
    d = tmp_path_factory.mktemp("runs")
    out = []
    for i, text in enumerate([TINY, TINY.replace(', {type = "ConnectionLimit", limit = 2}', "")]):
        toml = write(d / f"exp{i}.toml", text.replace('"tiny"', f'"tiny-{i}"'))
        path = d / f"run{i}.parquet"
        assert main(["run", str(toml), "--out", str(path), "--no-progress"]) == 0
        out.append(path)
    return out


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1024


# --------------------------------------------------------------------------- run


def test_run_writes_a_result_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    toml = write(tmp_path / "tiny.toml", TINY)
    out = tmp_path / "sub" / "tiny.parquet"
    assert main(["run", str(toml), "--out", str(out), "--no-progress"]) == 0
    r = load(out)
    assert r.label == "tiny" and len(r.df) == 12 and (r.df["status"] == 200).all()
    assert r.experiment.strategy.connection_cap == 2
    assert r.experiment.target.startswith("http://127.0.0.1:")  # the embedded server
    assert r.server_log is not None and len(r.server_log) == 12
    stdout = capsys.readouterr().out
    assert "tiny" in stdout and f"saved: {out}" in stdout


def test_run_loop_option_reaches_the_run(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    toml = write(tmp_path / "tiny.toml", TINY)
    out = tmp_path / "tiny.parquet"
    assert main(["run", str(toml), "--out", str(out), "--no-progress", "--loop", "uvloop"]) == 0
    r = load(out)
    assert r.meta["loop"] == "uvloop" and r.experiment.loop == "uvloop"
    assert len(r.df) == 12 and (r.df["status"] == 200).all()


def test_run_defaults_to_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "my-exp.toml", TINY)
    assert main(["run", "my-exp.toml", "--no-progress"]) == 0
    assert load(tmp_path / "data" / "my-exp.parquet").label == "tiny"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("workers = 3", "workers = 0"), "workers=0 is invalid: must be an integer in 1..10000000"),
        (("workers = 3", "wrokers = 3"), "wrokers=3 is invalid: is not a field"),
        (('latency = "fixed:0.005"', 'latency = "soon"'), "latency='soon' is invalid"),
        (("max_rate = 400", "max_rate = -1"), "RateLimit(max_rate)=-1 is invalid"),
        (("[server]", "[server]\nport = -5"), "port=-5 is invalid"),
        (("[server]", "[sever]"), "sever={'latency': 'fixed:0.005', 'seed': 1} is invalid"),
        (('name = "tiny"', 'name = "tiny"\nlatency = 0.1'), "in a [server] table"),
        (("[server]\n", "[server]\nlatncy = 1\n"), "server.latncy=1 is invalid"),
        (("seed = 1\n\n", "seed = 1\ntarget = 'http://127.0.0.1:1'\n"), "leave it out"),
        (("workers = 3", "workers = "), "invalid TOML"),
        (("max_rate = 400", "max_rate = 0.5"), "use RateLimit(1, period_s=2)"),
    ],
)
def test_bad_experiment_file_exits_2_with_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture, change: tuple[str, str], message: str
) -> None:
    assert change[0] in TINY
    toml = write(tmp_path / "bad.toml", TINY.replace(change[0], change[1], 1))
    out = tmp_path / "never.parquet"
    assert main(["run", str(toml), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert str(toml) in err
    assert "Traceback" not in err
    assert not out.exists()


def test_missing_experiment_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


def test_as_a_real_process(tmp_path: Path) -> None:
    """The console entry point, exit codes and stderr of a separate process."""
    good = write(tmp_path / "good.toml", TINY)
    bad = write(tmp_path / "bad.toml", TINY.replace("workers = 3", "workers = 0"))
    out = tmp_path / "good.parquet"
    cmd = [sys.executable, "-m", "ratelab.cli.main"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    ok = subprocess.run(
        [*cmd, "run", str(good), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert f"saved: {out}" in ok.stdout and load(out).label == "tiny"
    fail = subprocess.run(
        [*cmd, "run", str(bad)], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert fail.returncode == 2
    assert "error: " in fail.stderr and "workers=0 is invalid" in fail.stderr
    assert "Traceback" not in fail.stderr
    usage = subprocess.run([*cmd], capture_output=True, text=True, timeout=120, env=env)
    assert usage.returncode == 2 and "usage: ratelab" in usage.stderr


# --------------------------------------------------------------------------- saved runs


def test_plot_writes_a_png(saved_runs: list[Path], tmp_path: Path) -> None:
    fig = tmp_path / "figs" / "one.png"
    assert main(["plot", str(saved_runs[0]), "-o", str(fig)]) == 0
    assert_png(fig)


def test_compare_writes_a_png(saved_runs: list[Path], tmp_path: Path) -> None:
    fig = tmp_path / "both.png"
    assert main(["compare", *map(str, saved_runs), "-o", str(fig)]) == 0
    assert_png(fig)


def test_summary_prints_a_row_per_run(
    saved_runs: list[Path], capsys: pytest.CaptureFixture
) -> None:
    assert main(["summary", *map(str, saved_runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["run", "requests", "rate/s"]
    assert lines[2].startswith("tiny-0 ") and lines[3].startswith("tiny-1 ")
    assert lines[2].split()[1] == "12"  # requests
    assert len(lines) == 4


def test_loading_a_bad_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(plain)
    assert main(["summary", str(plain)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a ratelab result" in err and str(plain) in err


# --------------------------------------------------------------------------- demo, sweep, serve


def test_demo_writes_every_run_and_the_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--requests", "20", "--out", str(out), "--no-progress"]) == 0
    files = sorted(p.name for p in out.glob("*.parquet"))
    assert files == [
        "01-ratelimit-20-connectionlimit-10-10-workers.parquet",
        "02-ratelimit-20-connectionlimit-10-50-workers.parquet",
        "03-ratelimit-20-50-workers.parquet",
        "04-connectionlimit-10-50-workers.parquet",
        "05-concurrency-10-50-workers.parquet",
        "06-unlimited-50-workers.parquet",
    ]
    labels = []
    for i, name in enumerate(files):
        r = load(out / name)
        assert len(r.df) == 20 and r.experiment.seed == 1
        # the recipe as written (10 workers, think time), then the strategies under load
        assert r.experiment.workers == (10 if i == 0 else 50)
        assert (r.experiment.think_time is not None) == (i == 0)
        labels.append(r.label)
    assert_png(out / "compare.png")
    stdout = capsys.readouterr().out
    for label in labels:
        assert f"\n{label} " in stdout  # one table row per strategy
    assert str(out / "compare.png") in stdout


SWEEP = """\
[experiment]
requests = 6
workers = 2
seed = 1

[server]
seed = 1

[grid]
workers = [1, 3]
latency = ["fixed:0.002", "fixed:0.01"]
"""


def test_sweep_writes_csv_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    toml = write(tmp_path / "sweep.toml", SWEEP)
    csv, fig = tmp_path / "s.csv", tmp_path / "s.png"
    args = ["sweep", str(toml), "-o", str(csv), "--plot", str(fig), "--no-progress"]
    assert main(args) == 0
    table = pd.read_csv(csv)
    assert len(table) == 4
    assert table["workers"].tolist() == [1, 1, 3, 3]
    assert table["latency_s"].tolist() == [0.002, 0.01, 0.002, 0.01]
    assert (table["requests"] == 6).all()
    assert_png(fig)
    assert "latency_s" in capsys.readouterr().out


def test_sweep_without_latency_uses_one_embedded_server(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text = SWEEP.replace('latency = ["fixed:0.002", "fixed:0.01"]\n', "")
    csv = tmp_path / "s.csv"
    assert main(["sweep", str(write(tmp_path / "w.toml", text)), "-o", str(csv)]) == 0
    table = pd.read_csv(csv)
    assert table["workers"].tolist() == [1, 3] and (table["ok"] == 6).all()
    assert "latency_s" not in table.columns


def test_sweep_bad_grid_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    toml = write(tmp_path / "sweep.toml", SWEEP.replace("workers = [1, 3]", "wrokers = [1, 3]"))
    assert main(["sweep", str(toml), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "wrokers" in err and "is not a sweep key" in err


def test_examples_are_valid_and_local() -> None:
    """Every example builds its Experiment (or sweep) and targets only this machine."""
    import tomllib

    from ratelab.cli.toml_files import experiment_from_toml

    names = sorted(p.name for p in (ROOT / "examples").glob("*.toml"))
    assert {"recipe.toml", "bursts.toml", "sweep-latency.toml"} <= set(names)
    for name in names:
        data = tomllib.loads((ROOT / "examples" / name).read_text())
        if "grid" in data:
            fields = data["experiment"]
        else:
            fields = {k: v for k, v in data.items() if k != "server"}
        exp, server = experiment_from_toml(fields, data.get("server"))
        assert server is not None and server.host == "127.0.0.1", name
        server.stop()
        assert exp.target == server.url, name
        assert "target" not in fields, name


def test_serve_with_a_bad_latency_exits_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--port", "0", "--latency", "sometimes"]) == 2
    assert "latency='sometimes' is invalid" in capsys.readouterr().err


def test_format_table_aligns_columns() -> None:
    text = format_table(["run", "n"], [("a", 1), ("longer", 1234)])
    assert text.splitlines() == ["run         n", "------  -----", "a           1", "longer  1,234"]


def test_run_with_a_server_side_rate_limit(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "limited.toml",
        """\
requests = 12
workers = 12
seed = 1

[server]
rate_limit = "5/1s"
""",
    )
    out = tmp_path / "limited.parquet"
    assert main(["run", str(toml), "--out", str(out), "--no-progress"]) == 0
    r = load(out)
    assert (r.df["status"] == 200).sum() == 5 and (r.df["status"] == 429).sum() == 7
    assert (r.server_log["decision"] == "rate_limited").sum() == 7


def test_serve_rejects_a_bad_rate_limit(capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--port", "0", "--rate-limit", "lots"]) == 2
    assert "rate_limit" in capsys.readouterr().err


def test_a_combined_strategy_whose_parts_are_not_a_list_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text = TINY.replace(
        'strategy = [{type = "RateLimit", max_rate = 400}, {type = "ConnectionLimit", limit = 2}]',
        'strategy = {type = "Combined", parts = 5}',
    )
    assert "Combined" in text
    assert main(["run", str(write(tmp_path / "c.toml", text)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "strategy.parts=5 is invalid" in err and "Traceback" not in err


def test_a_binary_experiment_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    toml = tmp_path / "bin.toml"
    toml.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    assert main(["run", str(toml), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not UTF-8" in err and str(toml) in err


def test_a_busy_server_port_in_run_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = TINY.replace("[server]\n", f"[server]\nport = {port}\n")
        out = tmp_path / "never.parquet"
        toml = write(tmp_path / "busy.toml", text)
        assert main(["run", str(toml), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"127.0.0.1:{port}" in err
    assert "Traceback" not in err and not out.exists()


def test_serve_refuses_a_host_beyond_this_machine_without_allow_remote(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ratelab.server.local

    calls: list[dict] = []
    monkeypatch.setattr(ratelab.server.local, "serve", lambda **kw: calls.append(kw))
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--allow-remote" in err
    assert "beyond this machine" in err and calls == []  # nothing was served
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--allow-remote"]) == 0
    assert [c["host"] for c in calls] == ["0.0.0.0"]
    assert main(["serve", "--host", "127.0.0.1", "--port", "0"]) == 0
    assert [c["host"] for c in calls] == ["0.0.0.0", "127.0.0.1"]


def test_a_toml_experiment_carries_headers_and_per_endpoint_bodies(server) -> None:
    import tomllib

    import ratelab as rl
    from ratelab.cli.toml_files import experiment_from_toml

    data = tomllib.loads(
        f"""
        target = "{server.url}"
        requests = 6
        workers = 2
        seed = 3
        headers = {{"X-Api-Key" = "s3cret", "Accept" = "application/json"}}
        [endpoints."/anything/post"]
        weight = 1
        method = "POST"
        json = {{a = 1}}
        [endpoints."/get"]
        weight = 1
        """
    )
    exp, local = experiment_from_toml(data)
    assert local is None and exp.endpoint_options == {
        "/anything/post": {"method": "POST", "json": {"a": 1}}
    }
    assert exp.to_dict()["headers"]["X-Api-Key"] == "<redacted>"  # never written out
    result = rl.run(exp, progress=False)
    assert (result.df.status == 200).all()
    log = result.server_log
    assert log is not None
    methods = {(str(p), str(m)) for p, m in zip(log.path, log.method, strict=True)}
    assert methods == {("/anything/post", "POST"), ("/get", "GET")}
