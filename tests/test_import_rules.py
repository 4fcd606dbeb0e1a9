"""The import lines of docs/architecture.md, checked on the source: trainer and plugin apart, no cycles, GUI apart.

Imports are read with ast (module-level and function-level alike), resolved to modules of this repository, and
put into one graph. Each rule is checked on that graph and, to show the check can fail, on a graph with one edge
that breaks it.
"""

from __future__ import annotations

import ast
import functools
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
    "modules.planning",
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


@functools.cache  # one parse of the tree per session; the tests build changed copies, never edit it
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
    broken = {**graph, "modules.wan.model": graph["modules.wan.model"] | {"modules.trainer.state.ema"}}
    expected = ["modules.wan.model imports modules.trainer.state.ema"]
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


# ---- the layer order of docs/architecture.md ("Import lines") --------------------------------------------------
# Each entry is a layer; a module may import its own unit and units of lower layers only. Units of one layer do not
# import each other. A new package or plugin module must be placed here (test_every_module_has_a_layer).
LAYERS = [
    ["modules.util"],
    ["modules.config"],
    ["modules.base"],
    ["modules.module"],
    ["modules.memory", "modules.data"],
    ["modules.wan"],
    ["modules.registry"],
    ["modules.planning"],
    ["modules.trainer"],
    ["modules.ui", "modules.benchmark", "modules.dataset_tools"],
]
# Inside the plugin: names and files below loading, loading below what uses a loaded model; training, sampling and
# saving are siblings that share only what lies below them.
WAN_LAYERS = [
    ["modules.wan.variants"],
    ["modules.wan.encoder_parts", "modules.wan.model_facts"],
    ["modules.wan.model", "modules.wan.memory"],
    ["modules.wan.formats"],
    ["modules.wan.loading"],
    ["modules.wan.embeddings", "modules.wan.memory_facts", "modules.wan.part_report", "modules.wan.tiny_models"],
    ["modules.wan.vae_tiling", "modules.wan.random_models"],
    ["modules.wan.training", "modules.wan.sampling", "modules.wan.saving"],
    ["modules.wan.benchmark_kit"],
]
# Known upward arrows, each with the reason and when it goes: none. (The memory planner's arithmetic in
# modules/memory/ takes a model's facts as an argument; modules/planning.py, above the registry, looks them up.)
UPWARD_EXCEPTIONS: set[tuple[str, str]] = set()


def _place(module: str, layers: list[list[str]]) -> tuple[int, str] | None:
    for index, layer in enumerate(layers):
        for unit in layer:
            if in_package(module, unit):
                return index, unit
    return None


def places(source: str, target: str) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
    """(layer, unit) of both ends of an import: the plugin's inner layers when both are parts of the plugin."""
    inner = all(in_package(m, "modules.wan") and m != "modules.wan" for m in (source, target))
    layers = WAN_LAYERS if inner else LAYERS
    return _place(source, layers), _place(target, layers)


def layer_breaks(graph: dict[str, set[str]], exceptions=UPWARD_EXCEPTIONS) -> list[str]:
    breaks = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            here, there = places(source, target)
            if here is None or there is None or (source, target) in exceptions:
                continue
            if here[1] != there[1] and there[0] >= here[0]:
                breaks.append(f"{source} imports {target} ({'a sibling' if there[0] == here[0] else 'upward'})")
    return breaks


def unit_graph(graph: dict[str, set[str]], exceptions=UPWARD_EXCEPTIONS) -> dict[str, set[str]]:
    """The graph between units: the packages of LAYERS, and the plugin's parts of WAN_LAYERS among themselves
    (without the listed temporary exceptions, which close a cycle until they are gone)."""
    units: dict[str, set[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            if (source, target) in exceptions:
                continue
            here, there = places(source, target)
            if here is not None and there is not None and here[1] != there[1]:
                units.setdefault(here[1], set()).add(there[1])
    return units


def test_every_module_has_a_layer():
    modules = [m for m in import_graph() if m != "modules"]
    assert [m for m in modules if _place(m, LAYERS) is None] == []
    inner = [m for m in modules if in_package(m, "modules.wan") and m != "modules.wan"]
    assert [m for m in inner if _place(m, WAN_LAYERS) is None] == []


def test_imports_point_down_the_layer_order():
    graph = import_graph()
    assert layer_breaks(graph) == []
    # The check can fail: util reaching up to config (as device.py once did), a sibling of the plugin importing
    # another (training <-> sampling once), and and the planner's arithmetic reaching up to the registry.
    broken = {**graph, "modules.util.device": graph["modules.util.device"] | {"modules.config.train_config"}}
    assert layer_breaks(broken) == ["modules.util.device imports modules.config.train_config (upward)"]
    loras = "modules.wan.sampling.loras"
    broken = {**graph, loras: graph[loras] | {"modules.wan.training.experts"}}
    assert layer_breaks(broken) == [f"{loras} imports modules.wan.training.experts (a sibling)"]
    planning = "modules.planning"
    broken = {**graph, "modules.memory.plan": graph["modules.memory.plan"] | {"modules.registry"}}
    assert layer_breaks(broken) == ["modules.memory.plan imports modules.registry (upward)"]
    assert planning in graph and "modules.registry" in graph[planning]  # the lookup lives above the registry


def test_only_the_registry_names_the_plugin():
    graph = import_graph()
    outside = [
        f"{source} imports {target}"
        for source, targets in graph.items()
        if not in_package(source, "modules.wan") and source != "modules.registry"
        for target in targets
        if in_package(target, "modules.wan")
    ]
    assert outside == []


def test_no_cycle_between_packages():
    graph = import_graph()
    assert find_cycle(unit_graph(graph)) is None
    # formats <-> loading, as before the header code moved to formats:
    writer = "modules.wan.formats.lora_compatibility"
    broken = {**graph, writer: graph[writer] | {"modules.wan.loading.detection"}}
    assert find_cycle(unit_graph(broken)) in (
        ["modules.wan.formats", "modules.wan.loading", "modules.wan.formats"],
        ["modules.wan.loading", "modules.wan.formats", "modules.wan.loading"],
    )


def private_imports(paths) -> list[str]:
    """`from modules.x import _name` of another module's private name."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modules"):
                found += [f"{path.name} imports {node.module}.{a.name}" for a in node.names if a.name[0] == "_"]
    return found


def test_no_module_imports_another_modules_private_name(tmp_path):
    assert private_imports(sorted((ROOT / "modules").rglob("*.py"))) == []
    sample = tmp_path / "x.py"
    sample.write_text("from modules.util.atomic import _process_alive\n")
    assert private_imports([sample])[0].endswith("imports modules.util.atomic._process_alive")


def test_every_model_family_is_a_config_choice_and_provides_everything():
    """The config lies below the registry and cannot read FAMILIES: the two lists are kept equal here."""
    import dataclasses

    from modules.config.train_config import TrainConfig
    from modules.registry import FAMILIES, ModelFamily

    choices = next(f for f in dataclasses.fields(TrainConfig) if f.name == "model_type").metadata["choices"]
    assert set(choices) == set(FAMILIES)
    for name, family in FAMILIES.items():
        assert family.name == name and family.methods
        assert all(
            callable(getattr(family, f.name))
            for f in dataclasses.fields(ModelFamily)
            if f.name not in ("name", "methods")
        )
