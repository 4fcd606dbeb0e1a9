"""WanBaseDataLoader: the generic cached data loader (modules/data/flow/cached_loader.py) wired to WAN's VAE and UMT5.

The encoders are read on first use (modules/wan/encoder_parts.py), so a complete cache reads neither file, and
are released when caching is over: training steps never need them, and the run's sample prompts are encoded
here, once, so samples need UMT5 neither (embedding training is the exception: docs/embeddings.md).
"""

from __future__ import annotations

import logging

import torch

from modules.data.flow.cached_loader import CachedDataLoader, CacheEncoders, CachingStats  # noqa: F401 (re-exported)
from modules.wan.embeddings.vectors import embedding_identity, expand_prompt
from modules.wan.model import WanModel
from modules.wan.training import conditioning
from modules.wan.vae_tiling import TILE, configure_vae_tiling, tiling_identity_of

log = logging.getLogger("wan_trainer.data")


class WanBaseDataLoader(CachedDataLoader):
    def cache_encoders(self, model: WanModel, config, device: torch.device) -> CacheEncoders:
        self.model = model
        # Loaded embeddings change what captions encode to: their identity is part of every caption key
        # (nothing is added without embeddings, so caches made before embeddings existed stay valid).
        embeddings_key = f":embeddings={embedding_identity(model)}" if embedding_identity(model) else ""
        tiled = configure_vae_tiling(model, config, device)  # memory.vae_tiling; also for sample decoding
        text_identity = (
            f"{model.text_encoder_identity}:{model.encoder_dtype('text_encoder')}:max_length={model.text_max_length}"
            + embeddings_key
        )
        video_identity = (
            f"{model.vae_identity}:{model.encoder_dtype('vae')}:{model.variant.image_conditioning}"
            + tiling_identity_of(TILE if tiled else None)
        )
        model.encoders_to(device)  # placed there when first loaded
        if config.memory.text_encoder_on_cpu:  # a GPU too small for UMT5: captions are encoded on the CPU
            model.encoder_to("text_encoder", "cpu")

        def encode_text(captions: list[str]) -> list[torch.Tensor]:
            # A multi-vector embedding's placeholder stands for all its tokens (modules/wan/embeddings/vectors.py).
            return model.encode_text([expand_prompt(model, caption) for caption in captions])

        def release() -> None:
            model.encoders_to(torch.device("cpu"))
            released = model.release_encoders()
            if released:
                log.info("caching done: %s released from memory until a sample needs them", ", ".join(released))

        return CacheEncoders(
            encode_video=lambda pixels: wan_video_latents(model, pixels),
            encode_text=encode_text,
            video_identity=video_identity,
            text_identity=text_identity,
            pad_text=model.pad_text_embeds,
            pixel_multiple=model.variant.pixel_multiple,
            default_fps=model.variant.fps,
            prompts=sample_prompts(model, config),
            release=release,
        )

    def prepare(self, model: WanModel, config, device: torch.device, release_encoders: bool = True) -> None:
        super().prepare(model, config, device, release_encoders)
        model.prompt_embeds.update(self.prompt_embeds)  # the sampler reads them instead of running UMT5

    def attach(self, model: WanModel, config, device: torch.device) -> None:
        super().attach(model, config, device)  # placement and VAE tiling for samples; no encoder read
        model.prompt_embeds.update(self.prompt_embeds)


def sample_prompts(model: WanModel, config) -> list[str]:
    """Every prompt the run's samples will encode, as the sampler writes them: each positive prompt (and a chain's
    next prompts), each negative one (an empty negative prompt is the empty string, as in the pipelines).
    Embedding training encodes with vectors that change every step, so its samples encode as they go."""
    if config.training_method == "embedding":
        return []
    prompts = []
    for sample in config.sampling.samples or []:
        prompts += [sample.prompt, *getattr(sample, "next_prompts", []), sample.negative_prompt or ""]
    return [expand_prompt(model, prompt) for prompt in prompts if prompt is not None]


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
