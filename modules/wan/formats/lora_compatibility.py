"""Is this LoRA file for this model? Read from its header only (metadata and shapes), before any tensor loads.

A LoRA trained on T2V-A14B and applied to TI2V-5B (or the reverse) runs without an error when the shapes
happen to fit, and produces nonsense; when they do not fit, peft fails deep inside with a shape message.
Our saver records the model in the file (`modelspec.architecture`, e.g. `wan-2.2-t2v-a14b/lora`, and
`wan.variant`; see resources/model_specs/), so the sampler, the trainer (lora.continue_from) and
scripts/convert_model.py compare it with the model, and compare every LoRA matrix's shape with the layer it
targets. A model mismatch is refused unless explicitly allowed; a shape mismatch is always refused (it
cannot be applied). A file that is not a complete safetensors file is refused naming the file.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from modules.base.model_loader import ModelLoadError
from modules.util.errors import UserError
from modules.util.resources import MODEL_SPECS_DIR
from modules.wan.formats.headers import read_header
from modules.wan.formats.key_map import (
    KOHYA_PREFIX,
    ORIGINAL_PREFIXES,
    kohya_to_original_module,
    original_to_diffusers_key,
)

log = logging.getLogger("wan_trainer")
ARCHITECTURE_KEY, VARIANT_KEY = "modelspec.architecture", "wan.variant"
_MATRIX = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_down|lora_up)\.weight$")
_DIFFUSERS_PREFIX = "transformer."


class LoraCompatibilityError(UserError, ValueError):
    """A LoRA file that is unreadable or made for another model; the message names the file, both models and the fix."""


@dataclass(frozen=True)
class LoraFileInfo:
    path: Path
    metadata: dict[str, str]
    shapes: dict[str, tuple[int, ...]]  # tensor name -> shape
    model: str | None  # a variant name ("T2V-A14B"), another model's architecture string, or None (unknown)

    def describe_model(self) -> str:
        if self.model is None:
            return "an unnamed model"
        known = _architectures_by_variant()
        if self.model in known:
            return f"Wan 2.2 {self.model} ({ARCHITECTURE_KEY} {known[self.model]})"
        return f"{self.model!r} ({ARCHITECTURE_KEY})"


def _architectures_by_variant() -> dict[str, str]:
    """Variant name -> the architecture string our saver writes for its LoRAs."""
    found = {}
    for spec in MODEL_SPECS_DIR.glob("*-lora.json"):
        data = json.loads(spec.read_text(encoding="utf-8"))
        found[spec.name.removesuffix("-lora.json")] = data.get(ARCHITECTURE_KEY, "")
    return found


def read_lora_info(path: str | Path) -> LoraFileInfo:
    """Header of a LoRA file: metadata, tensor shapes and the model it names. LoraCompatibilityError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise LoraCompatibilityError(f"LoRA {path}: no such file. Fix: give the path of a .safetensors LoRA file.")
    try:
        header = read_header(path, "LoRA")  # refuses a header longer than the file before allocating anything
    except ModelLoadError as error:
        raise LoraCompatibilityError(str(error)) from None
    metadata = dict(header.metadata)
    return LoraFileInfo(path, metadata, {k: v.shape for k, v in header.tensors.items()}, lora_model(metadata))


def lora_model(metadata: dict[str, str]) -> str | None:
    """The model a LoRA names: our variant name when the spec is one of ours, else the architecture string."""
    variant = metadata.get(VARIANT_KEY)
    if variant in _architectures_by_variant():
        return variant
    architecture = metadata.get(ARCHITECTURE_KEY)
    if not architecture:
        return None
    for name, known in _architectures_by_variant().items():
        if architecture == known:
            return name
    return architecture


def linear_shapes(transformer: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """Diffusers module name -> (out_features, in_features) of every linear (peft wrappers seen through)."""
    shapes = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear):
            shapes[name.removesuffix(".base_layer")] = (module.out_features, module.in_features)
    return shapes


def shape_problems(info: LoraFileInfo, linears: dict[str, tuple[int, int]]) -> list[str]:
    """Each LoRA matrix whose module is missing from the model or whose shape does not fit its layer."""
    problems = []
    for key, shape in info.shapes.items():
        match = _MATRIX.match(key)
        if not match:
            continue  # alphas and other entries: the file reader judges those
        module = _diffusers_module(match["module"])
        if module is None or module not in linears:
            problems.append(f"{key} targets a layer the model does not have")
            continue
        out_features, in_features = linears[module]
        down = match["part"] in ("lora_A", "lora_down")
        expected = in_features if down else out_features
        actual = shape[1] if down else shape[0]
        if len(shape) != 2 or actual != expected:
            side = "in" if down else "out"
            problems.append(f"{key} has shape {list(shape)}, the layer's {side}_features is {expected}")
    return problems


def _diffusers_module(name: str) -> str | None:
    if name.startswith(_DIFFUSERS_PREFIX):
        return name[len(_DIFFUSERS_PREFIX) :]
    try:
        if name.startswith(ORIGINAL_PREFIXES):
            return original_to_diffusers_key(name)
        if name.startswith(KOHYA_PREFIX):
            return original_to_diffusers_key(kohya_to_original_module(name))
    except KeyError:
        return None
    return name


def check_lora_fits(
    path: str | Path,
    variant_name: str,
    linears: dict[str, tuple[int, int]] | None = None,
    *,
    allow_other_model: bool = False,
    override: str | None = "the override",
) -> LoraFileInfo:
    """Refuse (LoraCompatibilityError) a LoRA made for another model than `variant_name`, or whose shapes do not
    fit `linears` (from linear_shapes). `override` names the flag or setting that allows another model; None
    where there is none (the trainer's lora.continue_from, model.base_loras)."""
    info = read_lora_info(path)
    if info.model is not None and info.model != variant_name:
        message = (
            f"LoRA {info.path}: made for {info.describe_model()}, but the model is Wan 2.2 {variant_name}. "
            f"A LoRA only works on the model it was trained on. Fix: use a LoRA trained on {variant_name}"
        )
        if not allow_other_model:
            anyway = f", or set {override} to apply it anyway" if override else ""
            raise LoraCompatibilityError(f"{message}{anyway}.")
        log.warning("%s; applying it anyway because %s is set", message, override)
    if linears is not None:
        problems = shape_problems(info, linears)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise LoraCompatibilityError(
                f"LoRA {info.path} ({info.describe_model()}) does not fit the layers of this Wan 2.2 {variant_name} "
                f"model: {'; '.join(problems[:3])}{more}. Fix: use a LoRA trained on {variant_name}; shapes that do "
                "not fit cannot be applied, with or without an override."
            )
    return info
