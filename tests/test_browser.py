"""A reader's path: JupyterLab in headless Chromium runs notebooks through the UI.

Starts ``jupyter lab`` from this interpreter on a free 127.0.0.1 port with a random token,
on a scratch copy of ``notebooks/`` and private Jupyter config/data/settings/workspace
directories (nothing from the user's setup, no news or update checks), opens each of
``NOTEBOOKS`` (the quickstart, and the retries notebook with its hidden check and answer
cells) in Chromium via Playwright, runs Run → Run All Cells, waits for every code cell to
get an execution count, checks for figures and for the absence of tracebacks, and saves a
screenshot to ``tests/artifacts/browser-<notebook>.png``.

Needs ``/usr/bin/chromium`` (Debian: ``apt-get install -y chromium``). Without it the test
is skipped, except under CI (env ``CI`` set), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01-quickstart.ipynb", "14-retries-and-backpressure.ipynb"]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "tests" / "artifacts"
STARTUP_TIMEOUT_S = 60
RUN_TIMEOUT_S = 120
STDERR_MIME = "application/vnd.jupyter.stderr"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture
def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"{CHROMIUM} not found (Debian: apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; under CI the browser test must run", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(base_url, token)`` of a JupyterLab serving a scratch copy of notebooks/."""
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    home = tmp_path / "jupyter"
    settings = home / "settings"
    notify = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notify.parent.mkdir(parents=True)
    notify.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # Agg would make the figures vanish
    env.pop("RATELAB_NB_REQUESTS", None)
    env.update(
        RATELAB_NB_SMALL="1",
        RATELAB_ALLOW_NETWORK="0",
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),  # no user kernelspecs: this venv's python3
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        PYTHONUNBUFFERED="1",
    )
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyter-lab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{_log_tail(log)}")
                try:
                    with urllib.request.urlopen(f"{base}/api", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"jupyter lab not ready in {STARTUP_TIMEOUT_S} s:\n{_log_tail(log)}"
                    )
                time.sleep(0.25)
            yield base, token
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down, then exits
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


@contextmanager
def notebook_page(
    chromium: Path, lab: tuple[str, str], notebook: str, *, cells: int, height: int
) -> Iterator[Any]:  # a playwright Page
    """Chromium (1400 x ``height`` px) showing ``notebook`` in the JupyterLab of ``lab``
    (the ``jupyter_lab`` fixture's ``(base_url, token)``), once the notebook is loaded (all
    its ``cells`` cells rendered) and its kernel is idle. The browser closes on leaving."""
    from playwright.sync_api import sync_playwright

    base, token = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.goto(f"{base}/lab/tree/{notebook}?token={token}")
            page.wait_for_function(
                "n => document.querySelectorAll('.jp-Notebook .jp-Cell').length === n",
                arg=cells, timeout=STARTUP_TIMEOUT_S * 1000,
            )  # fmt: skip
            page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(
                timeout=STARTUP_TIMEOUT_S * 1000
            )
            yield page
        finally:
            browser.close()


_ALL_RAN = r"""() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
  const stderr = [...document.querySelectorAll('.jp-RenderedText[data-mime-type="MIME"]')];
  if (stderr.some(e => e.textContent.includes('Traceback'))) return 'error';
  const ran = p => /^\[\d+\]:$/.test(p.textContent.trim());
  return prompts.length > 0 && prompts.every(ran) ? 'done' : false;
}""".replace("MIME", STDERR_MIME)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.split("-")[0] for n in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab(
    notebook: str, chromium: Path, jupyter_lab: tuple[str, str]
) -> None:
    artifact = ARTIFACTS / f"browser-{notebook.removesuffix('.ipynb')}.png"
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    n_code = sum(c["cell_type"] == "code" for c in cells)
    with notebook_page(chromium, jupyter_lab, notebook, cells=len(cells), height=1000) as page:
        if any(c.get("metadata", {}).get("jupyter", {}).get("source_hidden") for c in cells):
            # hidden checks and answers render no prompt: show their code, so that
            # every code cell's execution count can be read
            page.get_by_role("menuitem", name="View", exact=True).click()
            page.get_by_role("menuitem", name="Expand All Code", exact=True).click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        outcome = page.wait_for_function(_ALL_RAN, timeout=RUN_TIMEOUT_S * 1000).json_value()

        images = page.locator(".jp-RenderedImage img")
        n_images = images.count()
        if n_images:
            images.last.scroll_into_view_if_needed()  # the screenshot shows the figure
        artifact.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artifact))

        stderr = page.locator(f'.jp-RenderedText[data-mime-type="{STDERR_MIME}"]')
        texts = "els => els.map(e => e.textContent.trim())"  # also off-screen cells
        tracebacks = [t for t in stderr.evaluate_all(texts) if "Traceback" in t]
        error_outputs = page.locator(".jp-OutputArea-output.jp-mod-error, .jp-Error").count()
        prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt")
        counts = prompts.evaluate_all(texts)

    assert outcome == "done", f"a cell raised: {tracebacks[:1]}; prompts {counts}"
    assert not tracebacks, f"tracebacks in the output: {tracebacks[:1]}"
    assert not error_outputs, f"{error_outputs} error outputs on the page"
    assert len(counts) == n_code, f"{len(counts)} code cells on the page, {n_code} in the file"
    assert all(re.fullmatch(r"\[\d+\]:", c) for c in counts), f"not every cell ran: {counts}"
    assert n_images >= 1, "no figure (.jp-RenderedImage img) on the page"
