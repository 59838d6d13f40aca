"""The shape of handlers/: flows stand side by side, views are shared, imports run one way."""

from __future__ import annotations

import ast
from pathlib import Path

HANDLERS = Path(__file__).resolve().parents[1] / "handlers"
# Modules every flow may use; everything else directly in handlers/ is a flow.
SHARED = {"handlers.common", "handlers.ui", "handlers.errors"}


def _module(path: Path) -> str:
    """Returns the dotted module name of a file under handlers/."""
    parts = path.relative_to(HANDLERS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, *, nested: bool) -> set[str]:
    """Returns the handlers.* modules imported at module level (or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and nested:
            continue
        body = ast.walk(node) if nested else [node]
        for inner in body:
            if isinstance(inner, ast.ImportFrom) and inner.module:
                names = [inner.module, *(f"{inner.module}.{a.name}" for a in inner.names)]
            elif isinstance(inner, ast.Import):
                names = [a.name for a in inner.names]
            else:
                continue
            found |= {n for n in names if n.startswith("handlers")}
    return found


def _graph() -> dict[str, set[str]]:
    """Returns module -> the handlers modules it imports at module level."""
    files = {_module(p): p for p in HANDLERS.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        top = {node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)}
        imported: set[str] = set()
        for node in top:
            imported |= _imports(node, nested=False)
        graph[name] = {m for m in imported if m in files and m != name}
    return graph


def _flows(graph: dict[str, set[str]]) -> set[str]:
    """Returns the flow modules (handlers/<flow>.py)."""
    return {m for m in graph if m.count(".") == 1 and m not in SHARED and m != "handlers.views"}


def test_no_flow_imports_another_flow() -> None:
    graph = _graph()
    flows = _flows(graph)
    assert flows >= {"handlers.checkin", "handlers.onboarding", "handlers.fallback"}
    crossings = {(m, dep) for m in flows for dep in graph[m] if dep in flows}
    assert crossings == set()


def test_views_and_shared_modules_import_no_flow() -> None:
    graph = _graph()
    flows = _flows(graph)
    for module, deps in graph.items():
        if module not in flows:
            assert not deps & flows, f"{module} imports a flow: {deps & flows}"


def test_the_import_graph_of_handlers_has_no_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*path, node, dep])}"
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_no_handlers_import_is_left_inside_a_function() -> None:
    late = {
        str(path.relative_to(HANDLERS.parent)): sorted(
            _imports(ast.parse(path.read_text()), nested=True)
        )
        for path in HANDLERS.rglob("*.py")
    }
    assert {path: mods for path, mods in late.items() if mods} == {}
