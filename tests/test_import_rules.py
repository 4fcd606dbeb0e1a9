"""The import lines of docs/architecture.md, checked on the source: trainer and plugin apart, no cycles, GUI apart.

Imports are read with ast (module-level and function-level alike), resolved to modules of this repository, and
put into one graph. Each rule is checked on that graph and, to show the check can fail, on a graph with one edge
that breaks it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the trainer may use: the contract, config, the memory planner, shared modules, utilities and the registry
# (never a plugin).
TRAINER_MAY_IMPORT = (
    "modules.base",
    "modules.config",
    "modules.memory",
    "modules.module",
    "modules.util",
    "modules.registry",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every repository module that `path` imports, at any depth of the file (function-level imports included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a function or class: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for p in (ROOT / "modules").rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, known) for p in files}


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def trainer_breaks(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{source} imports {target}"
        for source, targets in graph.items()
        if in_package(source, "modules.trainer")
        for target in targets
        if not in_package(target, "modules.trainer") and not any(in_package(target, p) for p in TRAINER_MAY_IMPORT)
    ]


def imports_between(graph: dict[str, set[str]], source_package: str, target_package: str) -> list[str]:
    return [
        f"{source} imports {target}"
        for source, targets in graph.items()
        if in_package(source, source_package)
        for target in targets
        if in_package(target, target_package)
    ]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    graph = import_graph()
    # modules.wan.loading.loader imports config.loading inside WanModelLoader.load: a function-level import.
    assert "modules.config.loading" in graph["modules.wan.loading.loader"]
    assert "modules.wan.model" in graph["modules.wan.loading.loader"]


def test_the_trainer_imports_only_the_contract_config_shared_modules_utilities_and_registry():
    graph = import_graph()
    assert trainer_breaks(graph) == []
    loop = "modules.trainer.generic_trainer"
    broken = {**graph, loop: graph[loop] | {"modules.wan.model"}}
    assert trainer_breaks(broken) == [f"{loop} imports modules.wan.model"]


def test_the_plugin_never_imports_the_trainer():
    graph = import_graph()
    assert imports_between(graph, "modules.wan", "modules.trainer") == []
    broken = {**graph, "modules.wan.model": graph["modules.wan.model"] | {"modules.trainer.ema"}}
    expected = ["modules.wan.model imports modules.trainer.ema"]
    assert imports_between(broken, "modules.wan", "modules.trainer") == expected


def test_the_gui_imports_nothing_from_the_plugin():
    graph = import_graph()
    assert imports_between(graph, "modules.ui", "modules.wan") == []
    broken = {**graph, "modules.ui": graph.get("modules.ui", set()) | {"modules.wan.variants"}}
    assert imports_between(broken, "modules.ui", "modules.wan") == ["modules.ui imports modules.wan.variants"]


def test_no_import_cycle_in_modules():
    graph = import_graph()
    assert find_cycle(graph) is None
    broken = {**graph, "modules.wan.variants": graph["modules.wan.variants"] | {"modules.wan.model"}}
    cycle = find_cycle(broken)
    assert cycle is not None and cycle[0] == cycle[-1] and "modules.wan.variants" in cycle
