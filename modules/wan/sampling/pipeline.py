"""Generates frames through diffusers' own WanPipeline / WanImageToVideoPipeline, built over the model's modules.

Sampling with the inference pipelines themselves (not a re-implementation) means a sample shows exactly
what a user gets after loading the saved LoRA into diffusers: the same text encoding, expert switch at the
boundary with one CFG scale per expert, schedulers, image conditioning and VAE decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from diffusers import WanImageToVideoPipeline, WanPipeline
from PIL import Image

from modules.module.eval_mode import eval_mode
from modules.module.mapped_weights import move_module
from modules.util.stop_point import stop_point
from modules.wan.model import WanModel
from modules.wan.sampling.loras import prompt_with_embeddings
from modules.wan.sampling.settings import SampleSettings, make_scheduler

# Eval mode (no LoRA dropout) and no autograd while sampling, every part's train flag restored after: the same
# rule as the validation loss, so one implementation.
sampling_mode = eval_mode


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@contextmanager
def placed_for_sampling(model: WanModel, device: torch.device | None, offload_experts: bool) -> Iterator[None]:
    """The VAE on `device`, each expert moved there when the pipeline first calls it; all put back after.

    The text encoder is not moved here: `encode_prompts` brings it for the encoding alone. With `offload_experts`
    only the expert in use is on the device (a 14B expert is ~28 GB in bf16), which is how training keeps the
    inactive expert too. Moving happens in a forward pre-hook because the pipeline, not we, decides at which
    step the boundary is crossed. Every part returns to where it was, so the training setup's own idea of which
    expert is on the accelerator stays true.
    """
    if device is None:
        yield
        return
    # The VAE is read now if it was released (a run's encoders leave memory after caching); UMT5 only if the
    # prompts were not encoded while caching.
    model.vae  # noqa: B018 - reads the VAE if it was released, so it is among the parts placed and put back
    parts = [*model.resident_encoders(), *model.experts()]
    original = [_device_of(part) for part in parts]
    experts = model.experts()

    def bring(module: torch.nn.Module, args) -> None:
        if _device_of(module) != device:
            if offload_experts:
                for other in experts:
                    if other is not module:
                        move_module(other, "cpu")  # back onto its file mapping where it has one
            move_module(module, device)

    handles = [expert.register_forward_pre_hook(bring) for expert in experts]
    try:
        model.vae.to(device)
        yield
    finally:
        for handle in handles:
            handle.remove()
        for part, where in zip(parts, original):
            move_module(part, where)


def build_pipeline(model: WanModel, settings: SampleSettings, image_to_video: bool):
    """The diffusers pipeline over the model's modules (adapters included, nothing copied), fresh scheduler.

    Image-to-video uses WanImageToVideoPipeline for both I2V-A14B (channel-concat conditioning) and TI2V-5B
    (expand_timesteps: a clean first latent frame with timestep 0), as diffusers documents for each model.
    """
    variant = model.variant
    parts = dict(
        tokenizer=model.tokenizer,
        # None when the prompts were encoded while caching and UMT5 left memory (encode_prompts uses them).
        text_encoder=model.resident("text_encoder"),
        vae=model.vae,
        scheduler=make_scheduler(model.scheduler, settings.scheduler, settings.flow_shift),
        transformer=model.transformer,
        transformer_2=model.transformer_2 if variant.has_transformer_2 else None,
        boundary_ratio=settings.boundary_ratio,
        expand_timesteps=variant.expand_timesteps,
    )
    if image_to_video:
        # No CLIP image encoder: WAN 2.2 transformers have no image_dim (that was Wan 2.1 I2V).
        return WanImageToVideoPipeline(image_processor=None, image_encoder=None, **parts)
    return WanPipeline(**parts)


def encode_prompts(
    pipe,
    arguments: dict,
    model: WanModel,
    device: torch.device | None,
    offload_experts: bool,
    text_on_cpu: bool = False,
) -> dict:
    """`arguments` with the prompt and negative prompt replaced by their embeddings, computed by the pipeline's own
    `encode_prompt` before any denoising step.

    Why first: UMT5-XXL (12.5 GiB in bf16) then never shares the device with an expert. On `device` it is there only
    while it encodes; with `offload_experts` the experts leave the device for that moment (the pipeline's
    pre-hook brings back the one it calls). So sampling during training needs max(text encoder, expert), not
    their sum, which is what lets a 24 GB card sample. The negative embedding is computed even when CFG is off
    (the pipeline then ignores it); with no negative prompt it is the empty prompt's, as in the pipeline.
    """
    arguments = dict(arguments)
    prompt, negative = arguments.pop("prompt"), arguments.pop("negative_prompt")
    cached = precomputed_prompts(model, prompt, negative or "", arguments["max_sequence_length"])
    if cached is not None:  # encoded once while caching, one prompt at a time as the pipeline does
        positive, negative_embeds = (embeds.to(device) if device is not None else embeds for embeds in cached)
        arguments.update(prompt_embeds=positive, negative_prompt_embeds=negative_embeds)
        return arguments
    pipe.text_encoder = text_encoder = model.text_encoder  # read now if it was released
    home = _device_of(text_encoder)
    # text_on_cpu (memory.text_encoder_on_cpu): a GPU too small for UMT5 encodes on the CPU; the states move after.
    target = torch.device("cpu") if text_on_cpu else device or home
    if device is not None and offload_experts and not text_on_cpu:
        for expert in model.experts():
            move_module(expert, "cpu")
    try:
        text_encoder.to(target)
        positive, negative_embeds = pipe.encode_prompt(
            prompt=prompt,
            negative_prompt=negative,
            do_classifier_free_guidance=True,
            max_sequence_length=arguments["max_sequence_length"],
            device=target,
        )
    finally:
        text_encoder.to(home)
    if device is not None:
        positive, negative_embeds = positive.to(device), negative_embeds.to(device)
    arguments.update(prompt_embeds=positive, negative_prompt_embeds=negative_embeds)
    return arguments


def precomputed_prompts(model: WanModel, prompt: str, negative: str, max_length: int):
    """(positive, negative) as the pipeline's encode_prompt returns them, from the states cached for this run's
    samples (modules/wan/training/data_loader.py), or None when either was not cached. The pipeline casts the
    encoder's output to the encoder's dtype and zero-pads it; the cache holds it trimmed in float32, which that
    cast rounds back to the same numbers."""
    states = [model.prompt_embeds.get(prompt), model.prompt_embeds.get(negative)]
    if any(state is None for state in states) or max_length != model.text_max_length:
        return None
    dtype = model.encoder_dtype("text_encoder")
    return tuple(model.pad_text_embeds([state]).to(dtype) for state in states)


def pipeline_arguments(model: WanModel, settings: SampleSettings) -> dict:
    arguments = dict(
        prompt=prompt_with_embeddings(model, settings.prompt),
        negative_prompt=prompt_with_embeddings(model, settings.negative_prompt) or None,
        width=settings.width,
        height=settings.height,
        num_frames=settings.frames,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        max_sequence_length=model.text_max_length,
        output_type="np",
    )
    if settings.guidance_scale_2 is not None:  # only a two-expert pipeline accepts a second scale
        arguments["guidance_scale_2"] = settings.guidance_scale_2
    return arguments


def generate_clip(
    model: WanModel,
    settings: SampleSettings,
    start_image: Image.Image | None = None,
    *,
    device: torch.device | None = None,
    offload_experts: bool = False,
    progress_bar: bool = False,
    text_on_cpu: bool = False,
) -> np.ndarray:
    """(F, H, W, 3) float32 frames in [0, 1], exactly as the pipeline returns them with output_type="np"."""
    with sampling_mode(model), placed_for_sampling(model, device, offload_experts):
        pipe = build_pipeline(model, settings, image_to_video=start_image is not None)
        pipe.set_progress_bar_config(disable=not progress_bar, leave=False)
        # A CPU generator makes the noise identical on every device (and equal to a diffusers user's CPU seed).
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        extra = {"image": start_image} if start_image is not None else {}
        arguments = encode_prompts(
            pipe, pipeline_arguments(model, settings), model, device, offload_experts, text_on_cpu
        )
        stop_point("sampling")
        # A requested stop (Ctrl-C during training) is taken after the current denoising step; the sample cut
        # short is not written.
        video = pipe(**arguments, generator=generator, callback_on_step_end=_stop_point_callback, **extra).frames[0]
    return np.asarray(video, dtype=np.float32)


def _stop_point_callback(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
    stop_point("sampling")
    return callback_kwargs


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
