"""The memory hint beside Start is written against the planner's agreed interface (modules/planning.py:
plan_memory(config) -> MemoryPlan with peak_gib and verdict(vram_gib)); without the planner it says so."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

from modules.config.loading import load_config
from modules.ui import memory_hint as hint
from tests.test_resume import PRESET


def test_without_the_planner_the_hint_says_not_available(monkeypatch):
    monkeypatch.setitem(sys.modules, "modules.planning", None)  # makes the import fail
    assert hint.memory_hint(load_config(PRESET)) == hint.NOT_AVAILABLE


def test_the_hint_reports_the_planners_peak_and_verdict_for_the_gpu_found(monkeypatch):
    seen = {}

    @dataclass
    class Plan:  # the interface the planner promises; the numbers come from the config handed in
        peak_gib: float

        def verdict(self, vram_gib):
            seen["vram"] = vram_gib
            return f"needs ~{self.peak_gib:.0f} GiB: turn on fp8 storage or swap blocks"

    def plan_memory(config):
        seen["config"] = config
        return Plan(peak_gib=config.lora.rank * 3.9)

    planner = types.ModuleType("modules.planning")
    planner.plan_memory = plan_memory
    monkeypatch.setitem(sys.modules, "modules.planning", planner)
    monkeypatch.setattr(hint, "gpu_memory_gib", lambda: 24.0)
    config = load_config(PRESET)  # lora.rank 8 -> 31.2
    assert hint.memory_hint(config) == "peak ~31.2 GiB: needs ~31 GiB: turn on fp8 storage or swap blocks (GPU: 24 GiB)"
    assert seen == {"config": config, "vram": 24.0}


def test_the_hint_adds_the_host_plans_verdict_for_this_machines_ram(monkeypatch):
    from modules.memory.host import RAM_ENV, build_host_plan
    from modules.registry import memory_facts_for

    monkeypatch.setenv(RAM_ENV, "48")
    config = load_config(PRESET)
    text = hint.memory_hint(config)
    expected = build_host_plan(config, memory_facts_for(config), 1).verdict(48)  # what --plan prints for 48 GB
    assert text.endswith(f"; RAM: {expected}") and "GiB peak in" in expected
