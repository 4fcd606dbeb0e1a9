"""Per-concept options: horizontal flip (a mirrored window is its own cache entry whose latents are the VAE
encoding of the mirrored frames), loss weight (each clip's loss is scaled by its concept's weight), and the
resolution / frame-count overrides (a concept's windows are bucketed by its own settings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.config.train_config import ConceptConfig
from modules.data.clips.buckets import resize_and_crop
from modules.data.media import media_io
from modules.trainer.generic_trainer import GenericTrainer
from tests.test_training import lora_config, one_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def noise_image(folder, name="still", size=(40, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"{name}.png")
    return folder / f"{name}.png"


def prepared(config) -> GenericTrainer:
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    return trainer


def test_a_flipped_window_is_its_own_entry_holding_the_encoding_of_the_mirrored_frames(tiny_model_dir, tmp_path):
    image = noise_image(tmp_path / "images")
    config = lora_config(tiny_model_dir("TI2V-5B"), image.parent, tmp_path / "run")
    config.data.concepts[0].flip = True
    trainer = prepared(config)
    samples, cache, model = trainer.data.samples, trainer.data.cache, trainer.model
    assert len(samples) == 2 and samples[0].latent_key != samples[1].latent_key
    bucket = samples[0].bucket
    pixels = resize_and_crop(media_io.read_frames(image, [0]), bucket.width, bucket.height).unsqueeze(0)
    with torch.no_grad():
        plain, mirrored = model.encode_video(pixels), model.encode_video(pixels.flip(-1))
    entries = [cache.get("latents", s.latent_key)["latents"] for s in samples]
    torch.testing.assert_close(entries[0], plain[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(entries[1], mirrored[0], atol=1e-6, rtol=0)
    assert (plain - mirrored).abs().max() > 1e-3  # the noise image is not symmetric

    # Without flip, the unflipped entry is the same cache entry (no re-encoding): flip changed no old key.
    config.data.concepts[0].flip = False
    again = prepared(config)
    assert [s.latent_key for s in again.data.samples] == [samples[0].latent_key]
    assert again.data.stats.videos_encoded == 0


def test_loss_weight_and_overrides_per_concept(tiny_model_dir, tmp_path):
    clip_folder = one_clip(tmp_path / "clips")
    image = noise_image(tmp_path / "images")
    config = lora_config(tiny_model_dir("TI2V-5B"), clip_folder, tmp_path / "run", resolution=32)
    config.data.concepts.append(
        ConceptConfig(
            path=str(image.parent), caption_source="text", caption_text="noise", loss_weight=2.5, resolution=64
        )
    )
    config.data.concepts[0].frames = 1  # the clip concept trains single frames; data.frames stays 5
    trainer = prepared(config)
    data = trainer.data
    by_source = {s.source: (s.bucket, w) for s, w in zip(data.samples, data.loss_weights)}
    clip_bucket, clip_weight = next(v for k, v in by_source.items() if k.suffix != ".png")
    image_bucket, image_weight = by_source[image]
    assert clip_bucket.frames == 1 and clip_bucket.width * clip_bucket.height <= 32 * 32 * 1.5
    assert image_bucket.width * image_bucket.height > 40 * 32  # 64-px area: the image is scaled up to cover it
    assert (clip_weight, image_weight) == (1.0, 2.5)

    trainer.set_up_training()
    for batch in data.batches(0):
        (weight,) = batch["loss_weight"].tolist()
        assert weight == (2.5 if batch["captions"] == ["noise"] else 1.0)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            prediction = trainer.setup.predict(
                trainer.model, batch, config, trainer.progress, generator, deterministic_timesteps=torch.tensor([0.5])
            )
            weighted = trainer.setup.calculate_loss(trainer.model, batch, prediction, config)
            unweighted = trainer.setup.calculate_loss(
                trainer.model, {k: v for k, v in batch.items() if k != "loss_weight"}, prediction, config
            )
        torch.testing.assert_close(weighted, unweighted * weight)
