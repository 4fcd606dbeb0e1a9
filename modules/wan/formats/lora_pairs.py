"""Which LoRA file goes into which expert: a single file, or this trainer's `<stem>_high_noise` / `<stem>_low_noise`
pair found from `<stem>.safetensors`, and the command-line form `PATH=WEIGHT[,WEIGHT_LOW]`.

Shared by everything that applies LoRA files to a model: the sampler, `lora.continue_from` and `model.base_loras`.
Experts are named by their attribute on the model ("transformer" = high noise, "transformer_2" = low noise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from modules.wan.formats.lora_file import EXPERT_FILE_SUFFIX, LoraFileError
from modules.wan.variants import HIGH, LOW

log = logging.getLogger("wan_trainer.samples")
LORA_EXPERT_CHOICES = ("auto", "high_noise", "low_noise", "both")
_EXPERTS_OF_CHOICE = {"high_noise": [HIGH], "low_noise": [LOW], "both": [HIGH, LOW]}
_SUFFIX_EXPERT = {suffix: expert for expert, suffix in EXPERT_FILE_SUFFIX.items()}  # "high_noise" -> "transformer"


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA to sample with. `weight` scales it on the high-noise expert (the only expert of TI2V-5B),
    `weight_2` on the low-noise expert (None: same as `weight`)."""

    path: str
    weight: float = 1.0
    weight_2: float | None = None
    expert: str = "auto"  # auto: from the file name suffix / wan.expert metadata, else both experts
    allow_other_model: bool = False  # apply a LoRA whose metadata names another model (shapes must still fit)

    def weight_for(self, expert: str) -> float:
        return self.weight if expert == HIGH or self.weight_2 is None else self.weight_2


def parse_lora_argument(text: str) -> LoraSpec:
    """`PATH`, `PATH=W` or `PATH=W_HIGH,W_LOW` (the command-line form; '=' because ':' is in Windows paths)."""
    path, sep, weights = text.rpartition("=")
    if not sep:
        return LoraSpec(path=text)
    try:
        values = [float(v) for v in weights.split(",")]
    except ValueError:
        return LoraSpec(path=text)  # '=' belonged to the file name
    if len(values) not in (1, 2) or not path:
        raise LoraFileError(f"--lora {text!r}: expected PATH, PATH=WEIGHT or PATH=WEIGHT_HIGH,WEIGHT_LOW")
    return LoraSpec(path=path, weight=values[0], weight_2=values[1] if len(values) == 2 else None)


def file_expert(path: Path) -> str | None:
    """The expert a file names: our saver's `wan.expert` metadata, else a `_high_noise`/`_low_noise` stem suffix."""
    try:
        with safe_open(str(path), framework="pt") as file:
            named = (file.metadata() or {}).get("wan.expert")
    except Exception as error:  # not a safetensors file: report it as such, not as a crash deeper down
        raise LoraFileError(f"LoRA {path}: cannot be read as safetensors ({error})") from None
    if named in _SUFFIX_EXPERT:
        return _SUFFIX_EXPERT[named]
    for suffix, expert in _SUFFIX_EXPERT.items():
        if path.stem.endswith("_" + suffix):
            return expert
    return None


def resolve_lora_files(spec: LoraSpec, two_experts: bool) -> dict[str, Path]:
    """Which file goes into which expert (attribute names "transformer" / "transformer_2")."""
    if spec.expert not in LORA_EXPERT_CHOICES:
        raise LoraFileError(
            f"LoRA {spec.path}: expert {spec.expert!r} is unknown; choose one of {', '.join(LORA_EXPERT_CHOICES)}"
        )
    path = Path(spec.path)
    if not two_experts:
        if not path.is_file():
            raise LoraFileError(f"LoRA {path}: not a file. Fix: give the path of a .safetensors LoRA")
        return {HIGH: path}
    if path.is_file():
        if spec.expert != "auto":
            return {e: path for e in _EXPERTS_OF_CHOICE[spec.expert]}
        expert = file_expert(path)
        if expert is None:
            log.info("LoRA %s names no expert; it is applied to both experts (set expert to choose one)", path)
            return {HIGH: path, LOW: path}
        return {expert: path}
    pair = {
        e: path.with_name(f"{path.stem}_{suffix}{path.suffix or '.safetensors'}")
        for e, suffix in EXPERT_FILE_SUFFIX.items()
    }
    found = {e: p for e, p in pair.items() if p.is_file()}
    if spec.expert != "auto":
        found = {e: p for e, p in found.items() if e in _EXPERTS_OF_CHOICE[spec.expert]}
    if not found:
        tried = ", ".join(str(p) for p in [path, *pair.values()])
        raise LoraFileError(
            f"LoRA {path}: no such file. Tried: {tried}. Fix: give an existing LoRA file or the stem of a "
            "<stem>_high_noise/<stem>_low_noise pair"
        )
    for expert in set(pair) - set(found):
        log.info("LoRA %s: no %s file; that expert samples without it", path, EXPERT_FILE_SUFFIX[expert])
    return found
