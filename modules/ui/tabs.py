"""Which tab shows which config section: the one hand-written table of the GUI (sections, never fields).

A top-level field or section missing from this table goes to an "Other" tab, so nothing is ever hidden.
"""

from __future__ import annotations

TABS: dict[str, tuple[str, ...]] = {
    "Model": ("model_type", "model"),
    "Data": ("data",),
    "Training": ("training_method", "training", "experts", "ema", "memory"),
    "LoRA": ("lora",),
    "Embedding": ("embedding",),
    "Full": ("finetune",),
    "Sampling": ("sampling",),
    "Backup & output": ("output", "backup", "version"),
}
OTHER_TAB = "Other"
# The method tabs: only the one of the chosen training_method is shown.
METHOD_TABS = {"lora": "LoRA", "embedding": "Embedding", "full": "Full"}


def tab_for(section: str) -> str:
    for tab, sections in TABS.items():
        if section in sections:
            return tab
    return OTHER_TAB
