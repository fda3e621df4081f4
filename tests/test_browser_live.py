"""``live=True`` as a person sees it: JupyterLab in headless Chromium runs a cell with
``rl.run(exp, live=True)`` on a ~5 s experiment against a LocalServer on 127.0.0.1, takes two
screenshots of the cell's output a second apart while it runs and checks the plotted
figure changed between them, then saves the notebook and checks the final static figure
(and the last line of headline numbers) is in the file.

JupyterLab and Chromium are set up as in ``tests/test_browser.py`` (its fixtures and
``notebook_page``, which opens the notebook and waits for the kernel, are imported). Needs
``/usr/bin/chromium``; skipped without it, except under CI.
Screenshots go to ``tests/artifacts/browser-live-{1,2}.png``.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from tests.test_browser import (  # noqa: F401  (fixtures)
    ROOT,
    chromium,
    jupyter_lab,
    notebook_page,
)

pytestmark = pytest.mark.browser

NOTEBOOK = "live-test.ipynb"
REQUESTS = 110  # RateLimit(20): 20 at once, then 90 at 20/s: about 4.5 s
SOURCE = f"""import ratelab as rl
with rl.LocalServer(latency=rl.Uniform(0.02, 0.05), seed=1) as server:
    exp = rl.Experiment(target=server.url, requests={REQUESTS}, workers=10,
                        strategy=rl.RateLimit(20) + rl.ConnectionLimit(5), seed=1)
    result = rl.run(exp, live=True)
print("rows", len(result.df))"""
ARTIFACTS = ROOT / "tests" / "artifacts"
PNG = b"\x89PNG\r\n\x1a\n"


def _notebook() -> dict[str, object]:
    cell = {"cell_type": "code", "execution_count": None, "id": "live", "metadata": {},
            "outputs": [], "source": SOURCE}  # fmt: skip
    return {
        "cells": [cell],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_live_view_updates_while_it_runs_and_leaves_the_final_figure(
    chromium: Path,  # noqa: F811
    jupyter_lab: tuple[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "notebooks" / NOTEBOOK  # the fixture serves tmp_path/notebooks
    path.write_text(json.dumps(_notebook()))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with notebook_page(chromium, jupyter_lab, NOTEBOOK, cells=1, height=1100) as page:
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        output = page.locator(".jp-Notebook .jp-CodeCell .jp-OutputArea").first
        image = output.locator(".jp-RenderedImage img").first
        image.wait_for(timeout=60_000)  # the first live frame
        prompt = page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt").first
        assert prompt.text_content().strip() == "[*]:", "the run ended before two frames"
        first_src = image.get_attribute("src")
        shot1 = output.screenshot(path=str(ARTIFACTS / "browser-live-1.png"))
        page.wait_for_timeout(1000)  # a second apart, as a person watching
        second_src = image.get_attribute("src")
        shot2 = output.screenshot(path=str(ARTIFACTS / "browser-live-2.png"))
        still_running = prompt.text_content().strip() == "[*]:"
        page.wait_for_function(
            "() => /^\\[\\d+\\]:$/.test(document.querySelector("
            "'.jp-Notebook .jp-CodeCell .jp-InputArea-prompt').textContent.trim())",
            timeout=120_000,
        )
        page.keyboard.press("Control+s")
        deadline = time.monotonic() + 30
        saved: dict[str, object] = {}
        while time.monotonic() < deadline:
            saved = json.loads(path.read_text())
            if saved["cells"][0]["outputs"]:  # type: ignore[index]
                break
            page.wait_for_timeout(250)

    assert still_running, "the second screenshot was taken after the run had ended"
    assert first_src != second_src, "the live figure did not change in a second"
    assert shot1 != shot2, "the two screenshots are identical"
    outputs = saved["cells"][0]["outputs"]  # type: ignore[index]
    images = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, f"one figure expected in the saved cell, got {len(images)}"
    final = base64.b64decode(images[0])
    assert final.startswith(PNG)
    live_frame = base64.b64decode(str(second_src).split(",", 1)[1])
    assert live_frame.startswith(PNG)
    assert _png_size(final) != _png_size(live_frame), "the saved figure is a live frame"
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    text = "".join("".join(h) if isinstance(h, list) else h for h in html)
    assert f"{REQUESTS}/{REQUESTS} done" in text
    streams = "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert f"rows {REQUESTS}" in streams
