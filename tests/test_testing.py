"""ratelab.testing, the public helpers for testing rate-limit code exactly."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

import ratelab as rl
from ratelab.records.schema import empty_frame
from ratelab.testing import VirtualClockLoop, make_frame, run_virtual


def test_an_hour_of_virtual_time_takes_no_wall_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600.0)
        return loop.time()

    wall0 = time.perf_counter()
    assert run_virtual(main()) == pytest.approx(3600.0, abs=1e-6)
    assert time.perf_counter() - wall0 < 30.0  # generous: the point is it does not wait 1 h


def test_a_deadlock_on_the_virtual_clock_is_an_error_not_a_hang() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()  # nothing will ever set it

    loop = VirtualClockLoop()
    try:
        with pytest.raises(RuntimeError, match="deadlock"):
            loop.run_until_complete(main())
    finally:
        loop.close()


def test_make_frame_has_the_schema_dtypes() -> None:
    df = make_frame(sent_s=[0.0, 0.5], done_s=[1.0, 1.5], status=[200, 429])
    assert list(df.columns) == list(empty_frame().columns)
    assert list(df.dtypes.astype(str)) == list(empty_frame().dtypes.astype(str))
    assert df.request_id.tolist() == [0, 1] and df.status.tolist() == [200, 429]
    assert rl.summary(df).loc["run", "requests"] == 2


def test_make_frame_errors_name_the_column() -> None:
    with pytest.raises(rl.ConfigError, match=r"latency_s=.* is not a column"):
        make_frame(latency_s=[1.0])
    with pytest.raises(rl.ConfigError, match=r"done_s=.* must have 2 values"):
        make_frame(sent_s=[0.0, 1.0], done_s=[1.0])


def test_the_readme_example_gives_what_it_says() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Testing your own code exactly") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    scope: dict[str, object] = {"rl": rl}
    exec(compile(code.group(1), "README.md", "exec"), scope)
    admitted = scope["store"].to_frame().admitted_s.sort_values().to_numpy()  # type: ignore[attr-defined]
    expected = [0.0] * 10 + [0.1 * k for k in range(1, 21)]  # as the comment says
    assert admitted == pytest.approx(expected, abs=1e-9)
