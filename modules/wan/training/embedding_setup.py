"""WanEmbeddingSetup: textual inversion. Only the new token vectors train; every model weight stays frozen.

The vectors are one float32 parameter of shape (num_vectors, dim) outside the text encoder, so the optimizer
(weight decay included) can never touch another row. Captions that contain the placeholder are encoded on
the fly with the current vectors (modules/wan/embeddings/text.py); the others come from the cache. After each
optimizer step (`after_optimizer_step`) and at save time the vectors are written into the text encoder's rows, so
samples and saves use them. The denoising objective is the LoRA setup's.
"""

from __future__ import annotations

import logging

import torch

from modules.base.model_setup import TrainProgress
from modules.wan.embeddings.text import encode_text_with_vectors
from modules.wan.embeddings.vectors import read_vectors, trained_embedding, write_vectors
from modules.wan.model import WanModel
from modules.wan.training.setup_base import WanTrainingSetup

log = logging.getLogger("wan_trainer")


class WanEmbeddingSetup(WanTrainingSetup):
    def setup_model(self, model: WanModel, config) -> None:
        self.freeze_and_route(model, config)
        self.embedding = trained_embedding(model)
        self.vectors = torch.nn.Parameter(read_vectors(model, self.embedding))
        self.embedding.parameter = self.vectors  # the saver reads the vectors from here
        self.warned_unused = False
        if config.training.gradient_checkpointing:
            for expert in model.experts():
                expert.enable_gradient_checkpointing()

    def parameter_groups(self, model: WanModel, config) -> list[dict]:
        return [{"params": [self.vectors], "lr": config.training.learning_rate, "name": "embedding"}]

    def setup_train_device(self, model: WanModel, config, device: torch.device) -> None:
        super().setup_train_device(model, config, device)
        model.text_encoder.to(device)  # the text encoder runs in every step of embedding training
        self.vectors.data = self.vectors.data.to(device)

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
        model.text_encoder.to(self.device)  # sampling between steps moves the encoders back to the CPU
        captions = batch.get("captions") or []
        using = [i for i, caption in enumerate(captions) if self.embedding.placeholder in caption]
        if using:
            fresh = encode_text_with_vectors(model, [captions[i] for i in using], self.embedding, self.vectors)
            cached = batch["text_embeds"].to(self.device)
            # Cached rows are zero-padded to text_max_length already; trim nothing, just replace the fresh ones.
            rows = [cached[i] for i in range(cached.shape[0])]
            for i, embeds in zip(using, fresh):
                rows[i] = torch.cat([embeds, embeds.new_zeros(cached.shape[1] - embeds.shape[0], embeds.shape[1])])
            batch = {**batch, "text_embeds": torch.stack(rows)}
        elif not self.warned_unused:
            log.warning(
                "a batch without the placeholder %r in its captions: it cannot train the embedding",
                self.embedding.placeholder,
            )
            self.warned_unused = True
        return super().predict(model, batch, config, progress, generator, deterministic_timesteps, expert)

    def calculate_loss(self, model: WanModel, batch: dict, prediction: dict, config) -> torch.Tensor:
        loss = super().calculate_loss(model, batch, prediction, config)
        # A batch without the placeholder has no path to the vectors; this keeps backward() valid (zero gradient).
        return loss if loss.requires_grad else loss + 0.0 * self.vectors.sum()

    def after_optimizer_step(self, model: WanModel, config) -> None:
        """The new vectors into the text encoder's rows, so samples and saves between steps use them."""
        write_vectors(model, self.embedding, self.vectors)

    def trainable_state_dict(self, model: WanModel) -> dict[str, torch.Tensor]:
        return {f"embedding.{self.embedding.placeholder}": self.vectors}
