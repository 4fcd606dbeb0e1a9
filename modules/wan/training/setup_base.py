"""WanTrainingSetup: what every WAN 2.2 training method shares (freezing, expert routing, placement, objective).

The LoRA, full and embedding setups derive from it and differ only in what they make trainable and save:
one flow-matching objective, one timestep draw and one expert routing for every method.
"""

from __future__ import annotations

import torch

from modules.base.model_setup import BaseModelSetup, TrainProgress, ValidationRoute
from modules.module.compile import compile_transformer
from modules.module.flow_matching import distribution_settings, noisy_input, sample_sigmas, velocity_target
from modules.module.mapped_weights import move_module
from modules.util.device import autocast
from modules.util.errors import UserError
from modules.wan.memory import apply_memory_settings, swapped_blocks
from modules.wan.memory_facts import memory_facts
from modules.wan.model import WanModel
from modules.wan.training import conditioning, experts


class WanTrainingSetup(BaseModelSetup):
    @classmethod
    def check_config(cls, config) -> None:
        """memory.blocks_to_swap against the transformer's block count, read from the model's config files; a
        model that cannot be read here is left to the loader, which names the problem."""
        if not config.memory.blocks_to_swap:
            return
        try:
            blocks = memory_facts(config).experts[0].num_blocks
        except UserError:
            return
        swapped_blocks(blocks, config.memory.blocks_to_swap)  # ConfigError naming the setting and the range

    def freeze_and_route(self, model: WanModel, config) -> None:
        """Every weight frozen; which experts take part and how steps are shared between them. Each training
        method (LoRA, full, embedding) starts here and then unfreezes or adds what it trains."""
        model.eval()
        for part in (*model.resident_encoders(), *model.experts()):  # encoders read later are frozen on load
            part.requires_grad_(False)
        model.trained_experts = experts.trained_experts(model.variant, config.experts.train)
        self.boundary = experts.boundary_ratio(model.variant, config.experts)
        self.high_share = (
            experts.high_noise_share(config.training, config.experts, self.boundary)
            if self.boundary is not None
            else 1.0
        )

    def parameter_groups(self, model: WanModel, config) -> list[dict]:
        groups, seen = [], set()
        rates = {
            experts.HIGH: config.experts.high_noise_learning_rate,
            experts.LOW: config.experts.low_noise_learning_rate,
        }
        for name in model.trained_experts:
            # A shared LoRA's tensors belong to both experts; the optimizer must see each once.
            params = [p for p in getattr(model, name).parameters() if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in params)
            if params:
                lr = (
                    rates[name]
                    if rates[name] is not None and model.variant.has_transformer_2
                    else config.training.learning_rate
                )
                groups.append({"params": params, "lr": lr, "name": name})
        return groups

    def setup_train_device(self, model: WanModel, config, device: torch.device) -> None:
        # What trains is known now: swapping keeps it on the device and moves only frozen weights.
        apply_memory_settings(model, config)
        # Encoders are needed only while caching; training steps never touch them.
        model.encoders_to(torch.device("cpu"))
        self.device = device
        self.offload = config.experts.offload_inactive_expert and len(model.trained_experts) > 1
        if not self.offload:
            for name in model.trained_experts:
                move_module(getattr(model, name), device)
        for name in model.trained_experts:  # after adapters and checkpointing, so the compiled code includes them
            compile_transformer(getattr(model, name), config.training.compile)
        self.active = None

    def _activate(self, model: WanModel, name: str) -> torch.nn.Module:
        """Put the expert of this step on the device; with offloading, the other one leaves first."""
        if self.offload and self.active != name:
            for other in model.trained_experts:
                if other != name:  # back onto its file mapping (memory.map_weights), not a fresh copy
                    move_module(getattr(model, other), "cpu")
            move_module(getattr(model, name), self.device)
        self.active = name
        return getattr(model, name)

    def expert_for(self, model: WanModel, config, progress: TrainProgress) -> str:
        return experts.expert_for_step(
            progress.global_step,
            model.trained_experts,
            self.high_share,
            config.experts.switch_every_steps,
            config.training.seed,
        )

    def predict(
        self,
        model: WanModel,
        batch: dict,
        config,
        progress: TrainProgress,
        generator: torch.Generator,
        deterministic_timesteps: torch.Tensor | None = None,
        expert: str | None = None,
    ) -> dict[str, torch.Tensor]:
        training = config.training
        expert = expert or self.expert_for(model, config, progress)
        transformer = self._activate(model, expert)
        device = self.device
        latents = batch["latents"].to(device, torch.float32)
        batch_size, _, latent_frames, latent_height, latent_width = latents.shape
        # With several processes, noise levels and noise are drawn for the step's whole batch and this process
        # takes its rows: the generators stay in step and the draws equal one process's with the whole batch.
        start, stop, drawn = batch.get("share", (0, batch_size, batch_size))
        if deterministic_timesteps is None:
            sigma = sample_sigmas(
                drawn,
                generator,
                **distribution_settings(training),
                sigma_range=experts.sigma_range(expert, self.boundary),
            )[start:stop]
        else:
            sigma = deterministic_timesteps.float()
        # Noise and the image-to-video draw come from the CPU generator: reproducible on any device.
        noise = torch.randn((drawn, *latents.shape[1:]), generator=generator)[start:stop].to(device)
        image_to_video = (
            training.image_to_video_ratio > 0
            and float(torch.rand(1, generator=generator)) < training.image_to_video_ratio
        )
        sigma = sigma.to(device)
        t = sigma * 1000.0
        x_t = noisy_input(latents, noise, sigma)
        loss_mask = torch.ones_like(latents)
        timestep = t
        variant = model.variant
        if variant.image_conditioning == "channel_concat":
            frames = (latent_frames - 1) * variant.vae_stride_temporal + 1
            x_t = conditioning.i2v_transformer_input(
                x_t, batch["image_condition"].to(device), frames, variant.vae_stride_temporal
            )
        elif variant.expand_timesteps:
            mask = torch.ones(1, 1, latent_frames, latent_height, latent_width, device=device)
            if image_to_video and latent_frames > 1:
                # The clean first latent frame equals the VAE encoding of the first frame alone (the VAE is causal).
                mask = conditioning.first_frame_mask(latent_frames, latent_height, latent_width).to(device)
                x_t = conditioning.with_clean_first_frame(x_t, latents[:, :, :1], mask)
                loss_mask = mask.expand_as(latents)
            timestep = conditioning.per_token_timesteps(t, mask, transformer.config.patch_size)
        if "mask" in batch:  # data.masked_training: each latent position weighted by its cached mask
            position_mask = batch["mask"].to(device, torch.float32).unsqueeze(1)
            # mask + u * (1 - mask): exactly 1 where the mask is 1, so an all-white mask changes no bit of the loss.
            loss_mask = loss_mask * (position_mask + config.data.unmasked_weight * (1 - position_mask))
        text = batch["text_embeds"].to(device)
        # The input layer's dtype is what the pipelines cast to (transformer.dtype); read directly, because the
        # diffusers property walks every module, a few ms per step.
        weight_dtype = transformer.patch_embedding.weight.dtype
        with autocast(device, training.train_dtype):
            predicted = transformer(
                hidden_states=x_t.to(weight_dtype),
                timestep=timestep,
                encoder_hidden_states=text.to(weight_dtype),
                return_dict=False,
            )[0]
        return {
            "predicted": predicted.float(),
            "target": velocity_target(latents, noise),
            "loss_mask": loss_mask,
            "sigma": sigma,
            "expert": expert,
        }

    def calculate_loss(self, model: WanModel, batch: dict, prediction: dict, config) -> torch.Tensor:
        squared = (prediction["predicted"] - prediction["target"]) ** 2
        mask = prediction["loss_mask"]
        if "loss_weight" in batch:  # per-concept weight of each clip (data.concepts[].loss_weight)
            weight = batch["loss_weight"].to(squared.device, squared.dtype)
            squared = squared * weight.view(-1, *[1] * (squared.dim() - 1))
        return (squared * mask).sum() / mask.sum().clamp(min=1)

    def validation_route(self, model: WanModel, sigma: float) -> ValidationRoute:
        """A14B: the expert serving `sigma` (high noise at or above the boundary), skipped when it is not trained;
        TI2V-5B: its one transformer."""
        if self.boundary is None:
            return ValidationRoute(expert=model.trained_experts[0])
        expert = experts.HIGH if sigma >= self.boundary else experts.LOW
        return ValidationRoute(measure=expert in model.trained_experts, expert=expert)
