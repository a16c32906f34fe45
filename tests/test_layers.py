"""The package's layering, enforced: imports point down the layer list, never into ``tests/``, no cycles.

Why a test: the folder tree is the architecture (README "Architecture"), and an import that points up a
layer is how a codebase quietly loses it. Every module's imports are parsed (not executed), including
imports inside functions; imports under ``if TYPE_CHECKING:`` are exempt, since they never run.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "eigendspy"

# Lowest first. Packages on one line share a rank and may import each other's modules (no cycles).
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("scoring", "domains"),
    ("lm",),
    ("signatures", "agents"),
    ("engine",),
    ("optimizers", "train"),
    ("eval",),
    ("recipe",),
    ("testing",),
    ("cli",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# Outside the package: who may import the test doubles in eigendspy.testing.
TESTING_USERS = ("tests", "notebooks", "benchmarks", "scripts")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[str, int, str]]:
    """``(imported module, line, imported name or "")`` for every import that can run."""
    found: list[tuple[str, int, str]] = []
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.extend((base, node.lineno, alias.name) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


MODULES = package_modules()


def resolve(target: str, name: str) -> str:
    """The module an import binds: ``from a.b import c`` is module ``a.b.c`` when that is a module."""
    if name and f"{target}.{name}" in MODULES:
        return f"{target}.{name}"
    return target


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "eigendspy" else None


def edges() -> dict[str, set[tuple[str, int]]]:
    graph: dict[str, set[tuple[str, int]]] = {}
    for module, path in MODULES.items():
        deps = set()
        for target, line, name in imports_of(path.read_text(), module, path.name == "__init__.py"):
            resolved = resolve(target, name)
            if resolved.startswith("eigendspy") and resolved != module:
                deps.add((resolved, line))
        graph[module] = deps
    return graph


GRAPH = edges()


def test_every_subpackage_has_a_layer() -> None:
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(RANK), f"subpackages and layers differ: {subpackages ^ set(RANK)}"
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules outside every layer: {loose}"


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, deps in GRAPH.items():
        source = layer_of(module)
        if source is None:  # the package root: lazy re-exports only
            continue
        for target, line in deps:
            dest = layer_of(target)
            if dest is None or dest not in RANK:
                continue
            if RANK[dest] > RANK[source]:
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target} ({source} < {dest})")
    assert not wrong, "imports pointing up the layer list:\n" + "\n".join(sorted(wrong))


def test_package_root_imports_nothing_eagerly() -> None:
    """``import eigendspy`` stays cheap and layer-free: its public API is a table of lazy re-exports."""
    deps = [target for target, _ in GRAPH["eigendspy"]]
    assert deps == [], deps


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return out


def _module_graph() -> dict[str, set[str]]:
    """Module-to-module edges, without the implicit edge from a module to its own package's ``__init__``."""
    graph = {}
    for module, deps in GRAPH.items():
        targets = set()
        for target, _ in deps:
            if target in MODULES and not module.startswith(target + "."):
                targets.add(target)
        graph[module] = targets
    return graph


def test_no_import_cycles() -> None:
    cycles = _strongly_connected(_module_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_private_names_imported_across_modules() -> None:
    wrong = []
    for module, path in MODULES.items():
        for target, line, name in imports_of(path.read_text(), module, path.name == "__init__.py"):
            if target.startswith("eigendspy") and name.startswith("_") and not name.startswith("__"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}.{name}")
    assert not wrong, "private names imported across modules:\n" + "\n".join(wrong)


def _outside_sources() -> list[tuple[str, Path, str]]:
    sources = []
    for folder in ("tests", "benchmarks", "scripts", "notebooks"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix == ".py":
                sources.append((folder, path, path.read_text()))
            elif path.suffix == ".ipynb":
                cells = json.loads(path.read_text())["cells"]
                code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
                code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("!", "%")))
                sources.append((folder, path, code))
    return sources


def test_nothing_outside_tests_imports_tests() -> None:
    wrong = []
    for module, path in MODULES.items():
        for target, line, _ in imports_of(path.read_text(), module, path.name == "__init__.py"):
            if target == "tests" or target.startswith("tests."):
                wrong.append(f"{path.relative_to(ROOT)}:{line}")
    for folder, path, source in _outside_sources():
        if folder == "tests":
            continue
        for target, line, _ in imports_of(source, path.stem, False):
            if target == "tests" or target.startswith("tests."):
                wrong.append(f"{path.relative_to(ROOT)}:{line}")
    assert not wrong, "imports from tests/ (move the double to eigendspy.testing):\n" + "\n".join(wrong)


@pytest.mark.parametrize("layer", [name for names in LAYERS for name in names if name not in ("testing", "cli")])
def test_library_layers_do_not_import_testing(layer: str) -> None:
    users = [m for m, deps in GRAPH.items() if layer_of(m) == layer and any(layer_of(t) == "testing" for t, _ in deps)]
    assert not users, f"{layer} imports the test doubles: {users}"


def test_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The parser sees function-level imports and ignores TYPE_CHECKING ones (so the checks above can fail)."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from eigendspy.engine import DataEngine\n"
        "def f():\n    from eigendspy.train.policy import ChatModelParticipant\n"
        "from . import task\n"
    )
    found = imports_of(source, "eigendspy.core.render", False)
    assert ("eigendspy.train.policy", 5, "ChatModelParticipant") in found
    assert all(target != "eigendspy.engine" for target, _, _ in found)
    assert ("eigendspy.core", 6, "task") in found
    assert _strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
