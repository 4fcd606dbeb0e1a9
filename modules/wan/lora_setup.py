"""WanLoRASetup: LoRA training of the WAN 2.2 transformer with the flow-matching objective."""

from __future__ import annotations

import torch

from modules.base.model_setup import BaseModelSetup, TrainProgress
from modules.module.flow_matching import noisy_input, sample_sigmas, velocity_target
from modules.module.lora import attach_lora, lora_state_dict
from modules.trainer.device import autocast
from modules.wan.model import WanModel


class WanLoRASetup(BaseModelSetup):
    def setup_model(self, model: WanModel, config) -> None:
        model.eval()
        for part in (model.vae, model.text_encoder, *model.experts()):
            part.requires_grad_(False)
        model.trained_experts = ["transformer"]
        for name in model.trained_experts:
            expert = getattr(model, name)
            attach_lora(
                expert,
                rank=config.lora.rank,
                alpha=config.lora.alpha,
                dropout=config.lora.dropout,
                layer_filter=config.lora.layer_filter or None,
            )
            if config.training.gradient_checkpointing:
                expert.enable_gradient_checkpointing()
            expert.train()

    def parameter_groups(self, model: WanModel, config) -> list[dict]:
        params = [p for name in model.trained_experts for p in getattr(model, name).parameters() if p.requires_grad]
        return [{"params": params, "lr": config.training.learning_rate}]

    def setup_train_device(self, model: WanModel, config, device: torch.device) -> None:
        # Encoders are needed only while caching; training steps never touch them.
        model.encoders_to(torch.device("cpu"))
        for name in model.trained_experts:
            getattr(model, name).to(device)
        self.device = device

    def predict(
        self,
        model: WanModel,
        batch: dict,
        config,
        progress: TrainProgress,
        generator: torch.Generator,
        deterministic_timesteps: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        training = config.training
        transformer = model.transformer
        device = next(transformer.parameters()).device
        latents = batch["latents"].to(device, torch.float32)
        batch_size = latents.shape[0]
        if deterministic_timesteps is None:
            sigma = sample_sigmas(
                batch_size,
                generator,
                distribution=training.timestep_distribution,
                shift=training.flow_shift,
                logit_mean=training.logit_mean,
                logit_std=training.logit_std,
                sigmoid_scale=training.sigmoid_scale,
            )
        else:
            sigma = deterministic_timesteps.float()
        # Noise comes from the CPU generator so a run is reproducible whatever the device.
        noise = torch.randn(latents.shape, generator=generator).to(device)
        sigma = sigma.to(device)
        x_t = noisy_input(latents, noise, sigma)
        timestep = self._timesteps(model, sigma * 1000.0, latents)
        text = batch["text_embeds"].to(device)
        weight_dtype = transformer.dtype
        with autocast(device, training.train_dtype):
            predicted = transformer(
                hidden_states=x_t.to(weight_dtype),
                timestep=timestep,
                encoder_hidden_states=text.to(weight_dtype),
                return_dict=False,
            )[0]
        return {"predicted": predicted.float(), "target": velocity_target(latents, noise), "sigma": sigma}

    @staticmethod
    def _timesteps(model: WanModel, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        if not model.variant.expand_timesteps:
            return t
        # TI2V-5B: one timestep per latent token, as WanPipeline builds with expand_timesteps=True.
        _, _, frames, height, width = latents.shape
        p_t, p_h, p_w = model.transformer.config.patch_size
        tokens = (frames // p_t) * (height // p_h) * (width // p_w)
        return t[:, None].expand(-1, tokens)

    def calculate_loss(self, model: WanModel, batch: dict, prediction: dict, config) -> torch.Tensor:
        return torch.nn.functional.mse_loss(prediction["predicted"], prediction["target"])

    def trainable_state_dict(self, model: WanModel) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name in model.trained_experts for k, v in lora_state_dict(getattr(model, name)).items()}
