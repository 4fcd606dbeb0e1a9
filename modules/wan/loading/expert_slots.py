"""Which A14B expert each transformer source is: from the config slot, checked against the file name.

High- and low-noise experts have the same names and shapes, so no header can tell them apart. The config says
it (model.transformer_path holds the high-noise expert, model.transformer_2_path the low-noise one, as in the
diffusers repos' transformer/ and transformer_2/); a file name that says high_noise / low_noise must agree.
When only one expert file is given and its name does not say which it is, the loader asks instead of guessing:
loading the wrong expert trains silently on the wrong noise levels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from modules.base.model_loader import ModelLoadError
from modules.wan.loading.file_detection import EXPERT_PARTS, SingleFileInfo
from modules.wan.variants import WanVariant

EXPERT_SETTINGS = {"transformer": "model.transformer_path", "transformer_2": "model.transformer_2_path"}
SLOT_EXPERT = {
    part: expert for expert, part in EXPERT_PARTS.items()
}  # transformer -> high_noise, transformer_2 -> low_noise


class ExpertSource(Protocol):
    path: Path
    file: SingleFileInfo | None


def _words(expert: str) -> str:
    return expert.replace("_", "-")


def _other(part: str) -> str:
    return "transformer_2" if part == "transformer" else "transformer"


def check_expert_slots(sources: dict[str, ExpertSource | None], variant: WanVariant, need_both: bool) -> None:
    """Refuse swapped, doubled or unknowable experts; `need_both`: the low-noise expert is loaded too."""
    if not variant.has_transformer_2:
        return
    named = {part: src.file.expert for part in EXPERT_SETTINGS if (src := sources.get(part)) is not None and src.file}
    if len(named) == 2 and named["transformer"] and named["transformer"] == named["transformer_2"]:
        raise ModelLoadError(
            f"{sources['transformer'].path} and {sources['transformer_2'].path}: both file names say "
            f"{_words(named['transformer'])}. Expected: one high-noise and one low-noise file of the same model. "
            f"Fix: set {EXPERT_SETTINGS['transformer']} to the high-noise file and {EXPERT_SETTINGS['transformer_2']} "
            f"to the low-noise file."
        )
    for part, expert in named.items():
        slot, other = SLOT_EXPERT[part], _other(part)
        if not expert or expert == slot:
            continue
        fix = (
            "swap the two settings"
            if sources.get(other) is not None
            else f"move it to {EXPERT_SETTINGS[other]} and set {EXPERT_SETTINGS[part]} to the {_words(slot)} file"
        )
        raise ModelLoadError(
            f"{sources[part].path}: swapped experts: the file name says {_words(expert)} but it is set as "
            f"{EXPERT_SETTINGS[part]} (the {_words(slot)} expert). Expected: the high-noise file in "
            f"{EXPERT_SETTINGS['transformer']}, the low-noise file in {EXPERT_SETTINGS['transformer_2']}. Fix: {fix}."
        )
    given = [part for part in EXPERT_SETTINGS if sources.get(part) is not None]
    if need_both and len(given) == 1 and named.get(given[0], "") is None:
        raise unknown_expert(sources[given[0]].path, given[0], variant)


def unknown_expert(path: Path, part: str, variant: WanVariant) -> ModelLoadError:
    """The question asked when one expert file is given and neither its name nor a second file says which it is."""
    other = _other(part)
    return ModelLoadError(
        f"{path}: which expert is this {variant.name} file, high-noise or low-noise? Its name says neither (no "
        f"'high_noise' / 'low_noise') and {EXPERT_SETTINGS[other]} is empty, so the other expert is missing too. "
        f"Found: it is set as {EXPERT_SETTINGS[part]} (the {_words(SLOT_EXPERT[part])} slot), and both experts have "
        f"the "
        f"same names and shapes, so the file itself cannot tell. Expected: the high-noise file in "
        f"{EXPERT_SETTINGS['transformer']} and the "
        f"low-noise file in {EXPERT_SETTINGS['transformer_2']}. Fix: if it is the {_words(SLOT_EXPERT[part])} expert, "
        f"keep "
        f"it and set {EXPERT_SETTINGS[other]} to the {_words(SLOT_EXPERT[other])} file; if not, move it to "
        f"{EXPERT_SETTINGS[other]} and set {EXPERT_SETTINGS[part]} to the {_words(SLOT_EXPERT[part])} file."
    )
