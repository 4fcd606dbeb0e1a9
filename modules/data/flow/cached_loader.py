"""CachedDataLoader: the data loader of any model family whose training reads cached latents and captions.

It runs the video pipeline once per concept (probe, windows, buckets, cache), caches the caption-dropout prompt
and the run's sample prompts, and then serves bucketed batches of cached tensors. What belongs to a model family
is the small `CacheEncoders` record its data loader returns: the encoders, the identities in cache keys, how text
is padded for a batch and the pixel multiple. Encoders are called only for entries not yet cached, so a family
that loads its encoders on first use (WAN: modules/wan/encoder_parts.py) reads none when the cache is complete.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from modules.base.data_loader import BaseDataLoader
from modules.data.caching.cache import DiskCache
from modules.data.flow.batching import BucketBatchSampler
from modules.data.flow.report import DataReport
from modules.data.flow.stages import CacheCaptions, TextEncoder, VideoEncoder
from modules.data.flow.video_dataset import build_cached_dataset, load_sample, settings_from_config
from modules.data.sources.caption_dropout import EMPTY_PROMPT, drops_caption
from modules.data.sources.concept_options import concept_of, concept_plan
from modules.data.sources.concepts import DataError, collect_media

log = logging.getLogger("wan_trainer.data")

# Sample prompts are cached apart from captions and one at a time, exactly as a pipeline encodes a prompt, so a
# sample made from the cached states equals one whose pipeline ran the text encoder itself.
PROMPT_KIND = "prompt"


@dataclass
class CacheEncoders:
    """What a model family gives the cached data loader."""

    encode_video: VideoEncoder  # pixels (1, 3, F, H, W) in [-1, 1] -> the tensors of one latent entry
    encode_text: TextEncoder  # captions -> each one's states, trimmed to its real tokens
    video_identity: str  # everything about the video encoder that changes a latent entry
    text_identity: str  # everything about the text encoder that changes a caption entry
    pad_text: Callable[[list[torch.Tensor]], torch.Tensor]  # trimmed states -> one padded batch tensor
    pixel_multiple: int  # bucket sides are multiples of this
    default_fps: float  # data.fps when it is 0
    prompts: list[str] = field(default_factory=list)  # sample prompts to encode once, while the encoders are here
    release: Callable[[], None] = lambda: None  # caching is over: free what only caching needed


class CachingStats:
    """Counts real encoder calls, so a run can report (and tests can check) that the cache was reused."""

    def __init__(self):
        self.videos_encoded = 0
        self.texts_encoded = 0  # captions (and caption dropout's empty prompt)
        self.prompts_encoded = 0  # sample prompts, cached apart (kind "prompt")


class CachedDataLoader(BaseDataLoader):
    @abstractmethod
    def cache_encoders(self, model, config, device: torch.device) -> CacheEncoders:
        """The family's encoders and identities for this run (placed on `device`, or loaded there on first use)."""

    def prepare(self, model, config, device: torch.device, release_encoders: bool = True) -> None:
        data = config.data
        self.stats = CachingStats()
        self.report = DataReport()
        cache_dir = Path(data.cache_dir) if data.cache_dir else Path(config.output.workspace_dir) / "cache"
        self.cache = DiskCache(cache_dir)
        encoders = self.cache_encoders(model, config, device)
        self.pad_text = encoders.pad_text
        self.identities = (encoders.video_identity, encoders.text_identity)

        def encode_video(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
            self.stats.videos_encoded += 1
            return encoders.encode_video(pixels)

        def encode_text(captions: list[str]) -> list[torch.Tensor]:
            self.stats.texts_encoded += len(captions)
            return encoders.encode_text(captions)

        run_settings = settings_from_config(data, encoders.default_fps, encoders.pixel_multiple)
        cached = False
        try:
            # One pass per concept: each may override the resolution, frame count and flip (concept_options.py).
            self.samples, self.loss_weights, self.dropout_rates = [], [], []
            for concept_config in data.concepts:
                if not concept_config.enabled:  # kept in the config, not trained (data.concepts[].enabled)
                    continue
                plan = concept_plan(concept_config, run_settings)
                samples = build_cached_dataset(
                    [plan.concept],
                    plan.settings,
                    self.cache,
                    encode_video,
                    encode_text,
                    video_identity=encoders.video_identity,
                    text_identity=encoders.text_identity,
                    report=self.report,
                )
                self.samples += samples
                self.loss_weights += [plan.loss_weight] * len(samples)
                own = concept_config.caption_dropout  # the concept's share, else the run's
                self.dropout_rates += [data.caption_dropout if own is None else own] * len(samples)
            # The empty prompt of caption dropout, cached like any caption (data.caption_dropout, a concept's own).
            self.empty_text_key = None
            if any(rate > 0 for rate in self.dropout_rates):
                (empty,) = CacheCaptions(self.cache, encode_text, encoders.text_identity).process(
                    [{"caption": EMPTY_PROMPT}]
                )
                self.empty_text_key = empty["text_key"]

            def encode_prompts(prompts: list[str]) -> list[torch.Tensor]:
                self.stats.prompts_encoded += len(prompts)
                return encoders.encode_text(prompts)

            self.prompt_embeds = self._cache_prompts(encoders.prompts, encode_prompts, encoders.text_identity)
            cached = True
        finally:
            if release_encoders or not cached:  # kept only for a caller that caches more with them
                encoders.release()
        self._log_summary(cache_dir)
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
        self.seed = config.training.seed

    def attach(self, model, config, device: torch.device) -> None:
        """The cache was built with the caching model (encoders only); the model that trains takes its place. Its
        encoders are read on first use, so this reads none; a model whose identities differ gets its own entries."""
        encoders = self.cache_encoders(model, config, device)
        if (encoders.video_identity, encoders.text_identity) != self.identities:
            log.warning("the loaded model's encoders are not the ones the cache was built with: checking the cache")
            self.prepare(model, config, device)
            return
        self.pad_text = encoders.pad_text

    def _cache_prompts(self, prompts: list[str], encode_text: TextEncoder, identity: str) -> dict[str, torch.Tensor]:
        """Each distinct prompt's trimmed states, encoded one at a time (cached on disk like captions)."""
        distinct = list(dict.fromkeys(prompts))
        stage = CacheCaptions(self.cache, encode_text, identity, kind=PROMPT_KIND, batch=1)
        items = stage.process([{"caption": prompt} for prompt in distinct])
        return {item["caption"]: self.cache.get(PROMPT_KIND, item["text_key"])["text_embeds"] for item in items}

    def _log_summary(self, cache_dir: Path) -> None:
        self.report.log_summary()  # skipped, corrected and unused files
        log.info(
            "cache: %d training windows; %d latents and %d captions encoded now (and %d sample prompts), the rest "
            "reused from %s",
            len(self.samples),
            self.stats.videos_encoded,
            self.stats.texts_encoded,
            self.stats.prompts_encoded,
            cache_dir,
        )

    def check_sources(self, config) -> None:
        for index, concept in enumerate(config.data.concepts):
            if not concept.enabled:
                continue
            try:
                collect_media(concept_of(concept), DataReport())  # lists files and reads captions only
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
            for place, i in enumerate(indices):  # place in the step's whole batch: the same on every process
                if drops_caption(self.seed, epoch, index, self.dropout_rates[i], position=start + place):
                    captions[place] = EMPTY_PROMPT
                    texts[place] = self.cache.get("text", self.empty_text_key)["text_embeds"]
            batch["text_embeds"] = self.pad_text(texts)
            batch["captions"] = captions  # embedding training re-encodes some
            batch["loss_weight"] = torch.tensor([self.loss_weights[i] for i in indices], dtype=torch.float32)
            # Named when a loss turns non-finite (modules/trainer/guards/nonfinite_loss.py).
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
