"""WanLoRASetup: LoRA training of the WAN 2.2 transformer(s) with the flow-matching objective."""

from __future__ import annotations

import torch

from modules.module.dora import share_dora
from modules.module.lora import attach_lora, lora_state_dict
from modules.module.lora_variants import share_adapter_weights
from modules.wan.model import WanModel
from modules.wan.training.lora_continue import continue_lora_from
from modules.wan.training.lora_preflight import check_lora_settings
from modules.wan.training.setup_base import WanTrainingSetup


class WanLoRASetup(WanTrainingSetup):
    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        check_lora_settings(config)  # layer filter and continue_from, from headers (lora_preflight.py)

    def setup_model(self, model: WanModel, config) -> None:
        self.freeze_and_route(model, config)
        for name in model.trained_experts:
            expert = getattr(model, name)
            attach_lora(
                expert,
                rank=config.lora.rank,
                alpha=config.lora.alpha,
                dropout=config.lora.dropout,
                layer_filter=config.lora.layer_filter or None,
                kind=config.lora.type,
                factor=config.lora.factor,
                use_dora=config.lora.use_dora,
            )
            if config.training.gradient_checkpointing:
                expert.enable_gradient_checkpointing()
            expert.train()
        continue_lora_from(model, config)  # lora.continue_from: checked against this model first
        if config.experts.shared_lora and len(model.trained_experts) == 2:
            share_adapter_weights(model.transformer, model.transformer_2)
            share_dora(model.transformer, model.transformer_2)

    def trainable_state_dict(self, model: WanModel) -> dict[str, torch.Tensor]:
        return {
            f"{name}.{k}": v for name in model.trained_experts for k, v in lora_state_dict(getattr(model, name)).items()
        }
