"""A student's path through the explorer: JupyterLab in headless Chromium runs
``18-explore-crossover.ipynb``, the test moves the ``rate`` slider with the keyboard, and
checks that the figure changed and that ``Explorer.result`` is the new setting.

Reuses ``tests/test_browser.py``'s JupyterLab (a scratch copy of ``notebooks/``, private
Jupyter directories, a random token on 127.0.0.1), its Chromium and ``notebook_page``
(which opens the notebook and waits for the kernel to go idle). After Run All, the
``rate`` slider's handle gets the focus and three ArrowRight presses (one step each: 1/s);
the test waits for the ``Image`` widget's source to change, compares its pixels before and
after, then re-runs the notebook's "What you settled on" cell, which waits for the explorer
and prints the setting on screen and its Experiment. A screenshot of the panel goes to
``tests/artifacts/browser-explore.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_browser import (  # noqa: F401  (chromium, jupyter_lab: fixtures)
    _ALL_RAN,
    ROOT,
    RUN_TIMEOUT_S,
    chromium,
    jupyter_lab,
    notebook_page,
)

pytestmark = pytest.mark.browser

NOTEBOOK = "18-explore-crossover.ipynb"
ARTIFACT = ROOT / "tests" / "artifacts" / "browser-explore.png"
SETTLED = "explorer.wait()\nprint(explorer.shown_setting)"  # the cell re-run at the end
PRESSES = 3

_IMG_SRC = """() => {
  const img = document.querySelector('.jp-Notebook img.widget-image');
  return img ? img.src : null;
}"""


def _rate_slider(page: Any) -> Any:  # playwright Page -> Locator
    return page.locator(".widget-slider", has=page.locator(".widget-label", has_text="rate")).first


def test_moving_a_slider_redraws_and_resimulates(
    chromium: Path,  # noqa: F811
    jupyter_lab: tuple[str, str],  # noqa: F811
) -> None:
    cells = json.loads((ROOT / "notebooks" / NOTEBOOK).read_text())["cells"]
    settled_index = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith(SETTLED))
    with notebook_page(chromium, jupyter_lab, NOTEBOOK, cells=len(cells), height=1100) as page:
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        outcome = page.wait_for_function(_ALL_RAN, timeout=RUN_TIMEOUT_S * 1000).json_value()
        assert outcome == "done", "a cell raised during Run All"

        slider = _rate_slider(page)
        slider.scroll_into_view_if_needed()
        readout = slider.locator(".widget-readout")
        before_value = float(readout.inner_text())
        image = page.locator(".jp-Notebook img.widget-image").first
        before_src = page.evaluate(_IMG_SRC)
        before_pixels = image.screenshot()

        handle = slider.locator(".noUi-handle")
        handle.focus()
        for _ in range(PRESSES):
            handle.press("ArrowRight")
        page.wait_for_function(f"() => ({_IMG_SRC})() !== {json.dumps(before_src)}",
                               timeout=30_000)  # fmt: skip
        after_value = float(readout.inner_text())
        # the last change may still be on its way: wait until the settled cell says so
        settled = page.locator(".jp-Notebook .jp-Cell").nth(settled_index)
        settled.click()
        page.keyboard.press("Escape")
        page.keyboard.press("Shift+Enter")
        output = settled.locator(".jp-OutputArea-output")
        output.filter(has_text="RateLimit").first.wait_for(timeout=60_000)
        text = output.all_inner_texts()
        image.scroll_into_view_if_needed()
        after_pixels = image.screenshot()
        slider.scroll_into_view_if_needed()
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACT))

    assert after_value == before_value + PRESSES, (before_value, after_value)
    assert after_pixels != before_pixels, "the figure did not change"
    shown = "\n".join(text)
    rate = f"{after_value:g}"
    assert f"'rate': {after_value!r}" in shown or f"'rate': {rate}" in shown, shown
    assert f"RateLimit({rate})" in shown, shown
