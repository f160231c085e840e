"""Imports point down: no cycle among tsformers' modules, counting the imports inside functions and the lazy ones."""
import ast
from pathlib import Path

import tsformers

PACKAGE = Path(tsformers.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = file
    return found


def _imports(name: str, file: Path, modules: dict) -> set[str]:
    """The tsformers modules ``name`` imports anywhere in its file (top level, functions, methods)."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from a.b import c" imports the module a.b.c when there is one, else the name c of a.b
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
            # a lazy import (PEP 562 maps such as _EXPORTS, importlib.import_module("tsformers....")) names its
            # module as a string: an edge like any other
            targets = [node.value]
        else:
            continue
        found |= {target for target in targets if target in modules and target != name}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


#: Edges that point up on purpose, each with its reason; every other upward edge is a cycle the test refuses.
#: persistence -> tsformers.estimators: loading a saved model finds its class by the name in config.json, and
#: tsformers' own estimators are imported on first use (PEP 562), so the lookup imports the named one first.
#: It runs when a model is loaded, never while a module is imported.
#: backbone.registry -> the estimators' registry and base: ``available(slot, estimator)`` asks an estimator
#: (by name, class or instance) which parts its slots accept; the estimators are imported when that question
#: is asked with a name, never while the backbone is imported.
UPWARD_ON_PURPOSE = {("tsformers.estimators.persistence", "tsformers.estimators"),
                     ("tsformers.backbone.registry", "tsformers.estimators.registry"),
                     ("tsformers.backbone.registry", "tsformers.estimators.base")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(name, file, modules) for name, file in modules.items()}
    for source, target in UPWARD_ON_PURPOSE:
        graph[source].discard(target)
    return graph


def test_the_model_file_layer_does_not_import_the_estimators():
    graph = _graph()

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), set()) - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    for module in ("tsformers.estimators.modelfile", "tsformers.estimators.persistence",
                   "tsformers.estimators.onnx", "tsformers.runtime.edits", "tsformers.runtime.onnx"):
        above = {m for m in reachable(module) if m == "tsformers" or m == "tsformers.estimators.base"
                 or m.startswith("tsformers.compress") or m == "tsformers.estimators.registry"}
        assert not above, f"{module} imports {sorted(above)}, which are above it"


def test_no_import_cycle_among_tsformers_modules():
    assert _cycles(_graph()) == []


def test_lazy_exports_are_edges_of_the_graph():
    """The PEP 562 maps of tsformers and tsformers.estimators name their modules as strings; the walk sees them."""
    graph = _graph()
    assert "tsformers.estimators.gateformer" in graph["tsformers.estimators"]
    assert "tsformers.comparison" in graph["tsformers"]
