"""Training conditioning equals what diffusers' pipelines prepare at inference."""

import torch
from diffusers import WanImageToVideoPipeline

from modules.wan.loading.loader import load_wan_model
from modules.wan.training import conditioning

HEIGHT, WIDTH, FRAMES = 64, 64, 9


def start_image(seed=0):
    return torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_i2v_a14b_condition_equals_the_pipeline(tiny_model_dir):
    path = tiny_model_dir("I2V-A14B")
    model = load_wan_model(path, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
    pipe = WanImageToVideoPipeline.from_pretrained(path, dtype=torch.float32)
    image = start_image()
    _, expected = pipe.prepare_latents(
        image, 1, 16, HEIGHT, WIDTH, FRAMES, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    condition_latents = model.encode_video(conditioning.i2v_condition_pixels(image, FRAMES))
    latent_frames, lh, lw = condition_latents.shape[2:]
    ours = torch.cat([conditioning.i2v_mask(1, FRAMES, lh, lw), condition_latents], dim=1)
    assert ours.shape == expected.shape == (1, 20, 3, HEIGHT // 8, WIDTH // 8)
    assert torch.equal(ours, expected)
    # The transformer input has the documented 36 channels: noisy 16 + mask 4 + condition 16.
    noisy = torch.randn(1, 16, latent_frames, lh, lw)
    assert torch.equal(
        conditioning.i2v_transformer_input(noisy, condition_latents, FRAMES), torch.cat([noisy, expected], 1)
    )


def test_ti2v_first_frame_latent_mask_and_timesteps_equal_the_pipeline(tiny_model_dir):
    path = tiny_model_dir("TI2V-5B")
    model = load_wan_model(path, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
    from diffusers import WanPipeline

    parts = WanPipeline.from_pretrained(path, dtype=torch.float32).components
    pipe = WanImageToVideoPipeline(
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"],
        vae=parts["vae"],
        scheduler=parts["scheduler"],
        transformer=parts["transformer"],
        expand_timesteps=True,
    )
    video = torch.rand(1, 3, FRAMES, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1)) * 2 - 1
    image = video[:, :, 0]
    _, expected_latent, expected_mask = pipe.prepare_latents(
        image, 1, 48, HEIGHT, WIDTH, FRAMES, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    # Training takes the first latent frame of the cached clip latents (no extra VAE call).
    ours_latent = model.encode_video(video)[:, :, :1]
    assert torch.equal(ours_latent, expected_latent)
    ours_mask = conditioning.first_frame_mask(*expected_mask.shape[2:])
    assert torch.equal(ours_mask, expected_mask)
    t = torch.tensor([700.0])
    expected_timesteps = (expected_mask[0][0][:, ::2, ::2] * t).flatten().unsqueeze(0)
    assert torch.equal(conditioning.per_token_timesteps(t, ours_mask, (1, 2, 2)), expected_timesteps)
    # The pipeline's blend keeps the clean first frame and the noisy rest.
    noisy = torch.randn_like(model.encode_video(video))
    blended = conditioning.with_clean_first_frame(noisy, ours_latent, ours_mask)
    assert torch.equal(blended[:, :, 0], ours_latent[:, :, 0]) and torch.equal(blended[:, :, 1:], noisy[:, :, 1:])
