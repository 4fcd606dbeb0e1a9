"""The memory planner as its callers use it: a model's facts looked up through the registry (this module sits above
it), the arithmetic from modules/memory/ (which takes the facts as an argument and knows no model family).

    plan = plan_memory(config)            # MemoryPlan
    plan.peak_gib, plan.peak_phase        # 21.3, "training"
    plan.verdict(24)                      # "fits a 24 GB card (21.3 GiB peak in training; ...)"
    plan.recommend(24)                    # Recommendation(changes={"memory.blocks_to_swap": 20}, plan=...)
    print(plan.table())                   # the per-phase table scripts/train.py --plan prints

Peak GPU memory of a run, phase by phase, and the settings that make it fit a card: the one estimate behind the
presets test, the GUI's memory hint, `scripts/train.py --plan`, the warning a run prints before loading, the
out-of-memory message and memory.vae_tiling=auto. The model's numbers come from its
plugin: the loaded model's own (WanModel.memory_facts) once it is loaded, else from the config's sources
(modules/registry.py memory_facts_for); the plan itself is modules/memory/plan.py, the arithmetic
modules/memory/phases.py, and the formulas, with what was measured, docs/presets.md.
"""

from __future__ import annotations

from modules.memory.facts import ModelFacts
from modules.memory.host import HostMemorySummary, host_memory_summary
from modules.memory.plan import MemoryPlan, Recommendation, build_plan, card_name, settings_from_config
from modules.registry import memory_facts_for

__all__ = [
    "MemoryPlan",
    "Recommendation",
    "build_plan",
    "card_name",
    "model_facts",
    "plan_host_memory",
    "plan_memory",
    "settings_from_config",
]


def model_facts(config, model=None) -> ModelFacts:
    """The model's facts: the loaded model's own where one is loaded (nothing re-detected from paths), else from
    the config's sources through its plugin (may raise PlanInputError when the config does not say enough)."""
    facts = model.memory_facts() if model is not None else None
    if facts is None:
        facts = memory_facts_for(config)
    return facts


def plan_memory(config, vram_gib: float | None = None, facts: ModelFacts | None = None) -> MemoryPlan:
    """Plan `config` (a TrainConfig) on a card of vram_gib (None: no card known; vae_tiling=auto then tiles where
    the untiled VAE pass would be the run's peak). `facts`: from `model_facts(config, model)`; None reads them
    from the config's sources."""
    return build_plan(config, vram_gib, facts if facts is not None else model_facts(config))


def plan_host_memory(config, processes: int = 1) -> HostMemorySummary:
    """The host-memory plan's summary for the window's memory hint: the same plan as `scripts/train.py --plan` and
    diagnostics.json (modules/memory/host.py), facts from the config's sources (which also say whether the weights
    are mapped from their files)."""
    return host_memory_summary(config, memory_facts_for(config), processes)
