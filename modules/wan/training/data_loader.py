"""WanBaseDataLoader: the video pipeline wired to WAN's VAE and UMT5, and batches of cached tensors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from modules.base.data_loader import BaseDataLoader
from modules.data.batching import BucketBatchSampler
from modules.data.cache import DiskCache
from modules.data.caption_dropout import EMPTY_PROMPT, drops_caption
from modules.data.concept_options import concept_settings
from modules.data.concepts import Concept, DataError, collect_media
from modules.data.report import DataReport
from modules.data.stages import CacheCaptions
from modules.data.video_dataset import build_cached_dataset, load_sample, settings_from_config
from modules.wan.embeddings.vectors import embedding_identity, expand_prompt
from modules.wan.model import WanModel
from modules.wan.training import conditioning
from modules.wan.vae_tiling import configure_vae_tiling, tiling_identity

log = logging.getLogger("wan_trainer.data")


class CachingStats:
    """Counts real encoder calls, so a run can report (and tests can check) that the cache was reused."""

    def __init__(self):
        self.videos_encoded = 0
        self.texts_encoded = 0


class WanBaseDataLoader(BaseDataLoader):
    def prepare(self, model: WanModel, config, device: torch.device) -> None:
        data = config.data
        self.model = model
        self.stats = CachingStats()
        self.report = DataReport()
        cache_dir = Path(data.cache_dir) if data.cache_dir else Path(config.output.workspace_dir) / "cache"
        self.cache = DiskCache(cache_dir)

        def encode_video(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
            self.stats.videos_encoded += 1
            return wan_video_latents(model, pixels)

        def encode_text(captions: list[str]) -> list[torch.Tensor]:
            self.stats.texts_encoded += len(captions)
            # A multi-vector embedding's placeholder stands for all its tokens (modules/wan/embeddings/vectors.py).
            return model.encode_text([expand_prompt(model, caption) for caption in captions])

        settings = settings_from_config(data, model.variant.fps, model.variant.pixel_multiple)
        # Loaded embeddings change what captions encode to: their identity is part of every caption key
        # (nothing is added without embeddings, so caches made before embeddings existed stay valid).
        embeddings_key = f":embeddings={embedding_identity(model)}" if embedding_identity(model) else ""
        configure_vae_tiling(model, config, device)  # memory.vae_tiling; stays set for sample decoding
        text_identity = (
            f"{model.text_encoder_identity}:{model.text_encoder.dtype}:max_length={model.text_max_length}"
            + embeddings_key
        )
        model.encoders_to(device)
        if config.memory.text_encoder_on_cpu:  # a GPU too small for UMT5: captions are encoded on the CPU
            model.text_encoder.to("cpu")
        try:
            # One pass per concept: each may override the resolution, frame count and flip (concept_options.py).
            self.samples, self.loss_weights = [], []
            for concept_config in data.concepts:
                samples = build_cached_dataset(
                    [_concept(concept_config)],
                    concept_settings(settings, concept_config),
                    self.cache,
                    encode_video,
                    encode_text,
                    video_identity=f"{model.vae_identity}:{model.vae.dtype}:{model.variant.image_conditioning}"
                    + tiling_identity(model.vae),
                    text_identity=text_identity,
                    report=self.report,
                )
                self.samples += samples
                self.loss_weights += [concept_config.loss_weight] * len(samples)
            # The empty prompt of caption dropout, cached like any caption (data.caption_dropout).
            self.empty_text_key = None
            if data.caption_dropout > 0:
                (empty,) = CacheCaptions(self.cache, encode_text, text_identity).process([{"caption": EMPTY_PROMPT}])
                self.empty_text_key = empty["text_key"]
        finally:
            model.encoders_to(torch.device("cpu"))
        self.report.log_summary()  # skipped, corrected and unused files
        log.info(
            "cache: %d training windows; %d latents and %d captions encoded now, the rest reused from %s",
            len(self.samples),
            self.stats.videos_encoded,
            self.stats.texts_encoded,
            cache_dir,
        )
        if not self.samples:
            from modules.config.validation import ConfigError

            raise ConfigError(f"data.concepts: no usable training items were found. {self.report.summary()}")
        self.sampler = BucketBatchSampler(
            [s.bucket for s in self.samples],
            batch_size=config.training.batch_size,
            seed=config.training.seed,
            rank=self.process_index,
            world_size=self.num_processes,
        )
        self.seed, self.caption_dropout = config.training.seed, data.caption_dropout

    def check_sources(self, config) -> None:
        for index, concept in enumerate(config.data.concepts):
            try:
                collect_media(_concept(concept), DataReport())  # lists files and reads captions only
            except DataError as error:
                raise DataError(f"data.concepts[{index}]: {error}") from None

    def batches_per_epoch(self) -> int:
        return self.sampler.num_batches()

    def batches(self, epoch: int, skip: int = 0) -> Iterator[dict]:
        for index, step_batch in enumerate(self.sampler.step_batches(epoch)[skip:], start=skip):
            indices, start, total = self.sampler.share(step_batch)
            items = [load_sample(self.samples[i], self.cache) for i in indices]
            batch = {key: torch.stack([item[key] for item in items]) for key in items[0] if key != "text_embeds"}
            captions = [self.samples[i].caption for i in indices]
            texts = [item["text_embeds"] for item in items]
            if drops_caption(self.seed, epoch, index, self.caption_dropout):
                captions = [EMPTY_PROMPT] * len(indices)
                texts = [self.cache.get("text", self.empty_text_key)["text_embeds"]] * len(indices)
            batch["text_embeds"] = self.model.pad_text_embeds(texts)
            batch["captions"] = captions  # embedding training re-encodes some
            batch["loss_weight"] = torch.tensor([self.loss_weights[i] for i in indices], dtype=torch.float32)
            # Named when a loss turns non-finite (modules/trainer/nonfinite_loss.py).
            batch["sources"] = [str(self.samples[i].source) for i in indices]
            batch["cache_entries"] = [self._entry_paths(self.samples[i]) for i in indices]
            if self.num_processes > 1:
                batch["share"] = (start, start + len(indices), total)  # see BaseDataLoader.share_between
            yield batch

    def _entry_paths(self, sample) -> list[str]:
        paths = [
            str(self.cache.path_for("latents", sample.latent_key)),
            str(self.cache.path_for("text", sample.text_key)),
        ]
        return paths + ([str(self.cache.path_for("masks", sample.mask_key))] if sample.mask_key else [])


def wan_video_latents(model: WanModel, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """What one training window caches: its latents and, for I2V-A14B, the pipeline's image condition.

    The condition (the first frame followed by black frames, VAE-encoded) is computed here once, so training
    steps never touch the VAE.
    """
    tensors = {"latents": model.encode_video(pixels)}
    if model.variant.image_conditioning == "channel_concat":
        condition = conditioning.i2v_condition_pixels(pixels[:, :, 0], pixels.shape[2])
        tensors["image_condition"] = model.encode_video(condition)
    return tensors


def _concept(concept_config) -> Concept:
    return Concept(
        path=Path(concept_config.path),
        repeats=concept_config.repeats,
        caption_source=concept_config.caption_source,
        caption_text=concept_config.caption_text,
        on_missing_caption=concept_config.on_missing_caption,
        include_subdirectories=concept_config.include_subdirectories,
    )
