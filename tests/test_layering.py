"""The package's import graph (module-level and function-level imports alike): no circles, and the pipeline's
direction data → models → train → calculator → md → studies, with active learning beside the studies."""

from __future__ import annotations

import ast

from helpers import ROOT

PACKAGE = ROOT / "ferronn"


def _modules() -> dict:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _graph() -> dict:
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    parent = ".".join(base + ([node.module] if node.module else []))
                else:
                    parent = node.module or ""
                targets = [f"{parent}.{a.name}" if f"{parent}.{a.name}" in modules else parent for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_and_has_no_import_circles():
    graph = _graph()
    assert "ferronn.models.loading" in graph["ferronn"]  # ferronn.load dispatches there (a function-level import)
    assert {"ferronn.models.committee", "ferronn.models.export"} <= graph["ferronn.models.loading"]
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]  # the detector itself finds a circle


def test_layers_import_only_downwards():
    graph = _graph()

    def imports(prefix: str) -> set:
        return {t for name, targets in graph.items() if name == prefix or name.startswith(prefix + ".")
                for t in targets}

    def under(targets: set, *prefixes: str) -> set:
        return {t for t in targets if any(t == p or t.startswith(p + ".") for p in prefixes)}

    assert under(imports("ferronn.data"), "ferronn.models", "ferronn.train", "ferronn.md", "ferronn.study") == set()
    assert under(imports("ferronn.models"), "ferronn.train", "ferronn.md", "ferronn.study", "ferronn.active") == set()
    assert under(imports("ferronn.md"), "ferronn.study", "ferronn.active", "ferronn.train") == set()
    assert under(imports("ferronn.active"), "ferronn.study") == set()  # CSV and figures come from ferronn.outputs
    assert under(imports("ferronn.config"), "ferronn.md", "ferronn.models") == set()
