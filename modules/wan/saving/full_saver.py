"""WanFineTuneSaver: a fully fine-tuned model as a diffusers folder and as one original-layout file per expert.

For an output path `out/model.safetensors`:
- `out/model-diffusers/`: the whole model (see finetune_files.write_model_folder), usable as model.base_path;
- `out/model.safetensors` (TI2V-5B) or `out/model_high_noise.safetensors` / `out/model_low_noise.safetensors`
  (A14B, one per trained expert): the transformer with original WAN names, for ComfyUI.
Both in output.save_dtype. See docs/full_finetune.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from modules.base.model_saver import BaseModelSaver
from modules.wan.formats.lora_file import EXPERT_FILE_SUFFIX, expert_paths, model_spec, training_metadata
from modules.wan.formats.model_files import EXPERT_KEY, save_single_file, write_model_folder
from modules.wan.model import WanModel

DIFFUSERS_SUFFIX = "-diffusers"


def diffusers_folder_for(destination: Path) -> Path:
    return destination.with_name(destination.stem + DIFFUSERS_SUFFIX)


def _model_spec(variant_name: str) -> dict[str, str]:
    # The LoRA spec names the architecture; a full model is the same architecture without the "/lora" part.
    spec = model_spec(variant_name)
    spec["modelspec.architecture"] = spec.get("modelspec.architecture", "").removesuffix("/lora")
    spec["modelspec.title"] = spec.get("modelspec.title", "").replace(" LoRA", " fine-tune")
    spec["modelspec.description"] = spec.get("modelspec.description", "").replace("LoRA for", "Fully fine-tuned")
    spec["modelspec.tags"] = spec.get("modelspec.tags", "").replace("lora", "finetune")
    return spec


class WanFineTuneSaver(BaseModelSaver):
    def save(self, model: WanModel, config, destination: Path) -> list[Path]:
        destination = Path(destination)
        trained = model.trained_experts or ["transformer"]
        dtype = config.output.save_dtype
        written: list[Path] = []
        if config.finetune.save_single_file:
            metadata = {
                **_model_spec(model.variant.name),
                **training_metadata(config, model),
                "wan.finetune_block_filter": config.finetune.block_filter,
            }
            for expert, path in expert_paths(destination, trained, model.variant.has_transformer_2).items():
                metadata[EXPERT_KEY] = EXPERT_FILE_SUFFIX[expert] if model.variant.has_transformer_2 else "single"
                written.append(save_single_file(getattr(model, expert).state_dict(), path, dtype, metadata))
        if config.finetune.save_diffusers:
            transformers = {
                name: (getattr(model, name).state_dict(), json.loads(getattr(model, name).to_json_string()))
                for name in trained
            }
            written.append(write_model_folder(model.model_path, diffusers_folder_for(destination), transformers, dtype))
        return written
