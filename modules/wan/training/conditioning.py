"""Image conditioning of WAN 2.2, built exactly as diffusers' pipelines build it at inference.

A LoRA only transfers if training feeds the transformer what inference feeds it, so these pure
functions follow WanImageToVideoPipeline.prepare_latents and the expand_timesteps path of the TI2V-5B
pipeline; tests compare them with the pipelines' own tensors.
"""

from __future__ import annotations

import torch


def i2v_condition_pixels(first_frame: torch.Tensor, frames: int) -> torch.Tensor:
    """I2V-A14B: what the VAE encodes for the condition: the start image followed by black (zero) frames.

    first_frame: (batch, 3, height, width) in [-1, 1] -> (batch, 3, frames, height, width).
    """
    image = first_frame.unsqueeze(2)
    zeros = image.new_zeros(image.shape[0], image.shape[1], frames - 1, *image.shape[3:])
    return torch.cat([image, zeros], dim=2)


def i2v_mask(
    batch_size: int, frames: int, latent_height: int, latent_width: int, temporal_stride: int = 4
) -> torch.Tensor:
    """I2V-A14B: the 4-channel mask that marks the first latent frame as given.

    Built at pixel-frame resolution and folded by the VAE's temporal stride, as the pipeline does,
    so every one of the stride's channels of latent frame 0 is 1 and everything else 0.
    """
    mask = torch.ones(batch_size, 1, frames, latent_height, latent_width)
    mask[:, :, 1:] = 0
    first = torch.repeat_interleave(mask[:, :, 0:1], repeats=temporal_stride, dim=2)
    mask = torch.cat([first, mask[:, :, 1:]], dim=2)
    mask = mask.view(batch_size, -1, temporal_stride, latent_height, latent_width)
    return mask.transpose(1, 2)


def i2v_transformer_input(
    noisy: torch.Tensor, condition_latents: torch.Tensor, frames: int, temporal_stride: int = 4
) -> torch.Tensor:
    """I2V-A14B transformer input: concat(noisy 16, mask 4, normalised condition latents 16) = 36 channels."""
    batch, _, _, height, width = noisy.shape
    mask = i2v_mask(batch, frames, height, width, temporal_stride).to(noisy.device, noisy.dtype)
    return torch.cat([noisy, mask, condition_latents.to(noisy.dtype)], dim=1)


def first_frame_mask(latent_frames: int, latent_height: int, latent_width: int) -> torch.Tensor:
    """TI2V-5B image-to-video: 0 on the clean first latent frame, 1 on the frames being denoised."""
    mask = torch.ones(1, 1, latent_frames, latent_height, latent_width)
    mask[:, :, 0] = 0
    return mask


def with_clean_first_frame(noisy: torch.Tensor, image_latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TI2V-5B: replace the first latent frame by the clean image latent (the pipeline's blend)."""
    return (1 - mask) * image_latents + mask * noisy


def per_token_timesteps(t: torch.Tensor, mask: torch.Tensor, patch_size: tuple[int, int, int]) -> torch.Tensor:
    """TI2V-5B (expand_timesteps): one timestep per latent token, 0 where the mask marks clean latents.

    t: (batch,), mask: (1 or batch, 1, frames, height, width) -> (batch, tokens).
    """
    p_t, p_h, p_w = patch_size
    token_mask = mask[:, 0, ::p_t, ::p_h, ::p_w].flatten(1)
    return token_mask.to(t.device, t.dtype) * t[:, None]
