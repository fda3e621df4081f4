"""The shape of the package: layers in folders, no import circles, analysis independent of
the client and the server, a lazy front door. Built from the source with ``ast``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ratelab

PACKAGE = Path(ratelab.__file__).resolve().parent
LAYERS = (
    "experiment", "client", "records", "server", "simulation", "analysis", "cli", "testing",
    "protocol", "explorer", "advice",
)  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every ratelab module ``name`` imports (function-level too; TYPE_CHECKING blocks not)."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for t in targets:
            while t and t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in modules and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    graph["ratelab"] = set()  # the lazy front door maps names to every layer
    return graph


def _find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return [*stack[stack.index(v) :], v]
            if not state.get(v) and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for m in sorted(graph):
        if not state.get(m) and (found := visit(m)):
            return found
    return None


def test_the_circle_finder_finds_a_circle() -> None:
    assert _find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_circle({"a": {"b"}, "b": set()}) is None


def test_no_import_circles() -> None:
    assert _find_circle(_graph()) is None


def test_protocol_imports_nothing_else_of_ratelab() -> None:
    """Server and client both read the wire's formats; neither may come in through them."""
    graph = _graph()
    protocol = [name for name in _modules() if name.startswith("ratelab.protocol")]
    assert len(protocol) >= 4, protocol
    for name in protocol:
        other = {m for m in graph[name] if not m.startswith("ratelab.protocol")}
        assert not other, (name, sorted(other))


def test_analysis_never_imports_the_client_the_server_or_aiohttp() -> None:
    graph = _graph()
    for name, path in _modules().items():
        if not name.startswith("ratelab.analysis"):
            continue
        bad = {m for m in graph[name] if m.startswith(("ratelab.client", "ratelab.server"))}
        assert not bad, f"{name} imports {bad}"
        tree = ast.parse(path.read_text())
        libs = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        libs |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(lib.partition(".")[0] == "aiohttp" for lib in libs), name


def test_layers_are_folders_of_at_most_nine_modules() -> None:
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file(), layer
    for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]:
        if folder.name == "__pycache__":
            continue
        modules = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
        assert len(modules) <= 9, f"{folder}: {sorted(p.name for p in modules)}"


@pytest.mark.parametrize("heavy", ["pandas", "pyarrow", "matplotlib", "aiohttp", "numpy"])
def test_import_ratelab_is_lazy(heavy: str) -> None:
    code = f"import sys, ratelab; assert {heavy!r} not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_public_name_resolves() -> None:
    for name in ratelab.__all__:
        assert getattr(ratelab, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ratelab.nope  # noqa: B018


def test_drawing_imports_pyplot_and_reading_does_not() -> None:
    code = (
        "import sys, ratelab as rl; from ratelab.records.schema import empty_frame;"
        "rl.summary(empty_frame()); rl.Result; rl.run; rl.load; rl.sweep;"
        "assert 'matplotlib.pyplot' not in sys.modules;"
        "rl.plot_throughput(empty_frame()); assert 'matplotlib.pyplot' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
