"""A data loader of random latents and text states of a fixed shape: the trainer's input without any media.

It fulfils the same contract as the real (cached) data loader, so a benchmark times the trainer's own step.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from modules.base.data_loader import BaseDataLoader


class SyntheticLatents(BaseDataLoader):
    def __init__(
        self,
        latent_shape: tuple[int, int, int, int],  # channels, frames, height, width of one sample
        text_shape: tuple[int, int],  # padded tokens, width
        batch_size: int,
        batches_per_epoch: int,
        image_condition: bool = False,
        seed: int = 0,
    ):
        self.latent_shape = latent_shape
        self.text_shape = text_shape
        self.batch_size = batch_size
        self.count = batches_per_epoch
        self.image_condition = image_condition
        self.seed = seed

    def prepare(self, model, config, device: torch.device, release_encoders: bool = True) -> None:
        """Nothing to cache: batches are drawn when asked for."""

    def batches_per_epoch(self) -> int:
        return self.count

    def batches(self, epoch: int, skip: int = 0) -> Iterator[dict]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        for _ in range(self.count - skip):
            batch = {
                "latents": torch.randn(self.batch_size, *self.latent_shape, generator=generator),
                "text_embeds": torch.randn(self.batch_size, *self.text_shape, generator=generator),
                "captions": [""] * self.batch_size,
            }
            if self.image_condition:
                batch["image_condition"] = torch.randn(self.batch_size, *self.latent_shape, generator=generator)
            yield batch
