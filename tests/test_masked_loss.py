"""Masked training (data.masked_training): masks beside the media, cached at the latent grid, weighting the loss.

The latent-grid rule is checked against explicit loops; the loss against the unmasked loss (an all-white mask
changes no bit) and its gradient (zero where the mask is black and unmasked_weight is 0); masks of rotated and
anamorphic clips against the frames ffmpeg's own player shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.config.loading import load_config
from modules.data.clips.buckets import resize_and_crop
from modules.data.flow.masks import mask_to_latent_grid
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.training.setup_base import TrainProgress
from tests.media_fixtures import ffmpeg, player_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PRESET = Path(__file__).resolve().parents[1] / "training_presets" / "demo_ti2v_5b_lora.json"


def test_latent_grid_rule_against_loops():
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(9, 32, 48, generator=generator)
    grid = mask_to_latent_grid(mask, 3, 4, 6)
    expected = torch.zeros(3, 4, 6)
    for k in range(3):
        frames = [0] if k == 0 else list(range(1 + (k - 1) * 4, 1 + k * 4))  # causal: frame 0 alone, then 4 each
        for i in range(4):
            for j in range(6):
                expected[k, i, j] = mask[frames, i * 8 : (i + 1) * 8, j * 8 : (j + 1) * 8].mean()
    torch.testing.assert_close(grid, expected, atol=1e-6, rtol=0)
    assert mask_to_latent_grid(mask[:1], 1, 2, 3).shape == (1, 2, 3)  # an image: one latent frame
    with pytest.raises(ValueError):
        mask_to_latent_grid(mask[:8], 3, 4, 6)  # 8 frames are not 1 + 4k


def write_image_concept(folder: Path, mask: np.ndarray | None, count: int = 2) -> Path:
    folder.mkdir(parents=True)
    generator = np.random.default_rng(3)
    for index in range(count):
        pixels = generator.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"item{index}.png")
        (folder / f"item{index}.txt").write_text(f"a test image number {index}")
        if mask is not None:
            Image.fromarray(mask).save(folder / f"item{index}-masklabel.png")
    return folder


def trainer_for(tiny_model_dir, concept: Path, tmp_path: Path, *extra: str) -> GenericTrainer:
    config = load_config(
        PRESET,
        [
            f"model.base_path={tiny_model_dir('TI2V-5B')}",
            f"data.concepts.0.path={concept}",
            f"output.workspace_dir={tmp_path / 'ws'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.resolution=32",
            "data.frames=1",
            "data.masked_training=true",
            "training.max_steps=1",
            "training.batch_size=1",
            "sampling.samples=[]",
            "output.tensorboard=false",
            *extra,
        ],
    )
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    trainer.set_up_training()
    return trainer


def loss_and_prediction(trainer: GenericTrainer, batch: dict) -> tuple[torch.Tensor, dict]:
    prediction = trainer.setup.predict(
        trainer.model, batch, trainer.config, TrainProgress(), torch.Generator().manual_seed(0)
    )
    return trainer.setup.calculate_loss(trainer.model, batch, prediction, trainer.config), prediction


def test_an_all_white_mask_gives_the_unmasked_loss_bit_for_bit(tiny_model_dir, tmp_path):
    white = np.full((32, 32, 3), 255, np.uint8)
    trainer = trainer_for(tiny_model_dir, write_image_concept(tmp_path / "white", white), tmp_path)
    batch = next(iter(trainer.data.batches(0)))
    assert torch.equal(batch["mask"], torch.ones_like(batch["mask"]))
    masked, _ = loss_and_prediction(trainer, batch)
    unmasked, _ = loss_and_prediction(trainer, {k: v for k, v in batch.items() if k != "mask"})
    assert torch.equal(masked, unmasked)
    assert not any("masklabel" in str(sample.source) for sample in trainer.data.samples)  # masks are not items


def test_a_black_half_with_unmasked_weight_0_gets_no_gradient(tiny_model_dir, tmp_path):
    half = np.zeros((32, 32, 3), np.uint8)
    half[:, :16] = 255  # left half trains; the latent grid is 2x2 (16 px per latent position)
    trainer = trainer_for(
        tiny_model_dir, write_image_concept(tmp_path / "half", half), tmp_path, "data.unmasked_weight=0"
    )
    batch = next(iter(trainer.data.batches(0)))
    assert batch["mask"][0, 0].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    loss, prediction = loss_and_prediction(trainer, batch)
    (gradient,) = torch.autograd.grad(loss, prediction["predicted"])
    assert torch.count_nonzero(gradient[..., 1]) == 0  # the masked-out column
    assert torch.count_nonzero(gradient[..., 0]) == gradient[..., 0].numel()


def test_a_file_without_a_mask_trains_everywhere_or_is_skipped(tiny_model_dir, tmp_path):
    concept = write_image_concept(tmp_path / "none", None)
    trainer = trainer_for(tiny_model_dir, concept, tmp_path)
    batch = next(iter(trainer.data.batches(0)))
    assert torch.equal(batch["mask"], torch.ones_like(batch["mask"]))
    with pytest.raises(Exception, match="no usable training items"):
        trainer_for(tiny_model_dir, concept, tmp_path / "skip", "data.concepts.0.on_missing_mask=skip")


def stored_half_white_video(path: Path, frames: int, *, rotation: int = 0, sar: str = "1") -> Path:
    """A 64x32 (stored) clip, left half white; shown rotated (display matrix) or stretched (pixel aspect)."""
    raw = np.zeros((frames, 32, 64, 3), np.uint8)
    raw[:, :, :32] = 255
    plain = path.with_name(path.stem + "-plain.mp4")
    ffmpeg(
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x32", "-r", "24", "-i", "-"),
        *("-vf", f"setsar={sar}", "-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv444p", str(plain)),
        data=raw.tobytes(),
    )
    if rotation:
        ffmpeg("-display_rotation", str(rotation), "-i", str(plain), "-c", "copy", str(path))
    else:
        plain.rename(path)
    plain.unlink(missing_ok=True)
    return path


@pytest.mark.parametrize("shown", ["rotated", "anamorphic"])
def test_masks_of_rotated_and_anamorphic_clips_line_up_with_their_frames(tiny_model_dir, tmp_path, shown):
    folder = tmp_path / "clips"
    folder.mkdir()
    settings = {"rotated": {"rotation": 90}, "anamorphic": {"sar": "2"}}[shown]
    clip = stored_half_white_video(folder / "clip.mp4", 9, **settings)
    (folder / "clip.txt").write_text("a half white clip")
    # The mask is a copy of the clip itself, with the same display matrix / pixel aspect: frames as shown apply.
    (folder / "clip-masklabel.mp4").write_bytes(clip.read_bytes())
    trainer = trainer_for(tiny_model_dir, folder, tmp_path, "data.frames=5", "data.fps=24", "data.resolution=64")
    sample = trainer.data.samples[0]
    cached = trainer.data.cache.get("masks", sample.mask_key)["mask"]
    latents = trainer.data.cache.get("latents", sample.latent_key)["latents"]

    # Reference: the frames ffmpeg's player shows (autorotation, SAR scaling), cut and resized as the clip's were.
    width, height = (32, 64) if shown == "rotated" else (128, 32)
    played = player_frames(clip, width, height, scale_width=shown == "anamorphic")[:5].copy()
    pixels = resize_and_crop(played, sample.bucket.width, sample.bucket.height)
    expected = mask_to_latent_grid(((pixels.mean(dim=0) + 1) / 2).clamp(0, 1), *latents.shape[1:])
    torch.testing.assert_close(cached, expected, atol=0.02, rtol=0)
    assert cached.max() > 0.9 and cached.min() < 0.1  # both halves are in the bucket: the check means something
