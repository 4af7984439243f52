"""The layout holds together: no import cycle inside ``llmctl/``, no module over 600 lines, and
nothing imports the repository's top-level folders as packages (the wheel has none of them).

Imports inside functions count too: a lazy import that closes a cycle only hides it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "llmctl"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "_assets" not in p.parts}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The llmctl modules ``path`` imports (``from a.b import c`` is ``a.b.c`` if that is a
    module, else ``a.b``); the parent packages Python also runs are left out on purpose."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            if t in known:
                found.add(t)
                break
    return found - {name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods) | {"llmctl.stacks." + p.stem for p in (ROOT / "stacks").glob("*.py")}
    return {name: _imports(path, name, known) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_inside_llmctl() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("folder", ["llmctl", "stacks"])
def test_no_module_is_over_600_lines(folder: str) -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / folder).rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_nothing_imports_a_top_level_folder_as_a_package() -> None:
    """The wheel carries stacks/ as llmctl.stacks and engines/loadtests/schemas as assets."""
    bad = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "stacks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            for n in names:
                if n.split(".")[0] in {"stacks", "engines", "loadtests", "schemas", "benchmarks"}:
                    bad.append(f"{path.relative_to(ROOT)}: {n}")
    assert bad == []


def test_no_comment_points_outside_the_repository() -> None:
    """What ships (and its tests) explains itself; only the sizing calibration data (read from
    ``$LLMCTL_CALIBRATION_DIR``, beside the repository by default) may be named."""
    bad = [
        f"{p.relative_to(ROOT)}:{n}"
        for folder in ("llmctl", "stacks", "engines", "loadtests", "tests", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
        if p.name != "test_layout.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "../shared" in line and "../shared/calibration" not in line
    ]
    assert bad == []
