"""The notebooks: committed clean, and each one runs top to bottom in a fresh kernel.

Execution uses nbclient with a kernel on this interpreter (``sys.executable -m
ipykernel_launcher``), so the venv that runs pytest is the venv that runs the notebooks,
whatever kernelspecs the machine has. The kernel gets test sizes (``RATELAB_NB_SMALL=1``),
network runs forced off (``RATELAB_ALLOW_NETWORK=0``: nothing leaves 127.0.0.1), no
``MPLBACKEND`` (``Agg`` there would make the figures vanish; the notebooks use
``%matplotlib inline``), a private ``IPYTHONDIR`` and a scratch working directory.
"""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

from ratelab.notebook import allow_asyncio_run

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 90  # one cell; the whole notebook gets NOTEBOOK_TIMEOUT_S
NOTEBOOK_TIMEOUT_S = 120
NETWORK_FLAG = "RATELAB_ALLOW_NETWORK"
NETWORK_OFF_NOTE = "network runs are off"  # what a notebook prints when it skips httpbin.org
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ThisInterpreterKernel(KernelManager):
    """A KernelManager whose kernel is ipykernel on ``sys.executable``, not whatever a
    ``python3`` kernelspec on this machine (user dir, system dir) points at."""

    @property
    def kernel_spec(self) -> KernelSpec:
        if getattr(self, "_this_spec", None) is None:
            self._this_spec = KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (ratelab tests)",
                language="python",
                name="python3",
            )
        return self._this_spec


def kernel_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.pop("RATELAB_NB_REQUESTS", None)  # the notebooks' own small sizes, not a leftover
    env["RATELAB_NB_SMALL"] = "1"
    env[NETWORK_FLAG] = "0"
    env["IPYTHONDIR"] = str(tmp / "ipython")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _head(source: str, lines: int = 12) -> str:
    src = source.splitlines()
    more = f"\n    ... ({len(src) - lines} more lines)" if len(src) > lines else ""
    return "\n".join(f"    {line}" for line in src[:lines]) + more


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(_ANSI.sub("", text).rstrip().splitlines()[-lines:])


def _outputs(nb: nbformat.NotebookNode) -> list[tuple[int, dict[str, Any]]]:
    return [
        (i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    ]  # fmt: skip


def test_allow_asyncio_run_applies_nest_asyncio2(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake = types.ModuleType("nest_asyncio2")
    fake.apply = lambda: calls.append("apply")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nest_asyncio2", fake)  # never patch pytest's asyncio
    allow_asyncio_run()
    assert calls == ["apply"]


def test_allow_asyncio_run_names_the_extra_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nest_asyncio2", None)  # "import nest_asyncio2" fails
    with pytest.raises(ImportError, match=r"pip install 'ratelab\[notebooks\]'"):
        allow_asyncio_run()


def test_found_the_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_clean(path: Path) -> None:
    """Committed without outputs, execution counts or saved widget state; sizes come from a
    ``parameters`` cell that honours RATELAB_NB_SMALL."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code"
        and (c.get("outputs") or c.get("execution_count") is not None
             or "execution" in c.get("metadata", {}))
    ]  # fmt: skip
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; clear them"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state in the metadata"
    assert nb.cells and nb.cells[0].cell_type == "markdown", f"{path.name}: no markdown title"
    assert nb.cells[0].source.startswith("# "), f"{path.name}: the first cell is not a title"
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert "RATELAB_NB_SMALL" in params[0].source, f"{path.name}: sizes ignore RATELAB_NB_SMALL"
    assert any("%matplotlib inline" in c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.notebooks
@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    """Runs top to bottom at test sizes, draws at least one figure, shows no error."""
    nb = nbformat.read(path, as_version=4)
    env = kernel_env(tmp_path)
    assert env[NETWORK_FLAG] != "1", "tests never leave 127.0.0.1"
    current: dict[str, int] = {}

    def on_cell_execute(cell: nbformat.NotebookNode, cell_index: int) -> None:
        current["index"] = cell_index

    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        kernel_manager_class=ThisInterpreterKernel,
        resources={"metadata": {"path": str(tmp_path)}},
        on_cell_execute=on_cell_execute,
    )
    failure = None
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        failure = f"{exc.ename}: {exc.evalue}"
        i = current.get("index", -1)
        for out in nb.cells[i].get("outputs", []) if i >= 0 else []:
            if out.get("output_type") == "error":  # the kernel's own traceback of this cell
                failure = _tail("\n".join(out.get("traceback", [])), 15)
    except CellTimeoutError as exc:
        failure = f"timed out after {CELL_TIMEOUT_S} s: {_tail(str(exc), 3)}"
    if failure is not None:  # outside the except: no chained traceback in the report
        i = current.get("index", -1)
        source = nb.cells[i].source if i >= 0 else "(unknown cell)"
        pytest.fail(
            f"{path.name}: cell {i} failed\n--- cell source (head) ---\n{_head(source)}\n"
            f"--- error (last lines) ---\n{failure}",
            pytrace=False,
        )

    outputs = _outputs(nb)
    errors = [(i, o) for i, o in outputs if o.get("output_type") == "error"]
    assert not errors, (
        f"{path.name}: error outputs in cells {[i for i, _ in errors]}: "
        + "; ".join(f"{o.get('ename')}: {o.get('evalue')}" for _, o in errors)
    )
    noisy = [
        (i, _tail(_text(o.get("text", "")), 8)) for i, o in outputs
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
        and re.search(r"Warning|Traceback|Error", _text(o.get("text", "")))
    ]  # fmt: skip
    assert not noisy, f"{path.name}: warnings or errors on stderr: {noisy}"
    images = [o for _, o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name}: no figure (image/png output) was drawn"
    if any(NETWORK_FLAG in c.source for c in nb.cells):
        stdout = "".join(
            _text(o.get("text", "")) for _, o in outputs if o.get("output_type") == "stream"
        )
        assert NETWORK_OFF_NOTE in stdout, f"{path.name}: the network runs were not skipped"
