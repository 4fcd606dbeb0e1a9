"""`scripts/train.py --plan`: the memory plan of a config as a table and a verdict, without training."""

from __future__ import annotations

import _repo_path  # noqa: F401

from modules.planning import plan_memory
from modules.util.device import gpu_capacity_gib

TIERS = (16, 24, 32, 48, 80)


def print_plan(config, vram_gib: float | None) -> int:
    vram = vram_gib if vram_gib is not None else gpu_capacity_gib()
    plan = plan_memory(config, vram)
    print(plan.table())
    if vram is None:
        print("no GPU found and no --vram given; on a card of")
        for card in TIERS:
            print(f"  {card} GB: {plan.verdict(card)}")
    else:
        print(f"verdict: {plan.verdict(vram)}")
    return 0
