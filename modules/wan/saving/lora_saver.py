"""WanLoRASaver: writes the trained LoRA(s), one file per expert, through formats/lora_file.py."""

from __future__ import annotations

from pathlib import Path

from modules.base.model_saver import BaseModelSaver
from modules.module.lora import lora_state_dict
from modules.wan.formats.lora_file import EXPERT_FILE_SUFFIX, expert_paths, save_lora_file, training_metadata


class WanLoRASaver(BaseModelSaver):
    def save(self, model, config, destination: Path) -> list[Path]:
        experts = model.trained_experts or ["transformer"]
        written = []
        for expert, path in expert_paths(Path(destination), experts, model.variant.has_transformer_2).items():
            metadata = training_metadata(config, model)
            metadata["wan.expert"] = EXPERT_FILE_SUFFIX[expert] if model.variant.has_transformer_2 else "single"
            written.append(
                save_lora_file(
                    lora_state_dict(getattr(model, expert)),
                    path,
                    format=config.output.lora_format,
                    rank=config.lora.rank,
                    alpha=config.lora.alpha,
                    metadata=metadata,
                    variant=model.variant.name,
                    dtype=config.output.save_dtype,
                    kind=config.lora.type,
                    factor=config.lora.factor,
                )
            )
        return written
