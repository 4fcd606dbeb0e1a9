"""Caching as its own phase: scripts/cache.py builds the cache without a transformer, training then reads no
encoder file (not even on resume), UMT5 leaves memory after caching with no reference left, and samples made
from the prompts encoded while caching equal samples whose pipeline ran UMT5 itself."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import UMT5Config, UMT5EncoderModel

from modules.config.loading import save_config
from modules.config.sampling_config import SampleConfig
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.loading.loader import load_wan_model
from modules.wan.sampling.sampler import generate_float_frames
from modules.wan.training.data_loader import WanBaseDataLoader
from tests.test_training import lora_config, one_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parent.parent


def tiny_sample() -> SampleConfig:
    return SampleConfig(
        prompt="a red circle moves", negative_prompt="blurry", width=32, height=32, frames=5, steps=2, seed=3
    )


def hollow_out(folder: Path) -> None:
    """Keep each safetensors file's header and size but zero its data (a sparse copy): the loader's header checks
    pass, while a real read would give all-zero weights, and so other captions, prompts and samples. Size and
    modification time are kept: they are the model's identity in cache keys (modules/wan/loading/identity.py)."""
    for file in folder.glob("*.safetensors"):
        header = file.read_bytes()[: 8 + int.from_bytes(file.read_bytes()[:8], "little")]
        stat = file.stat()
        with file.open("wb") as out:
            out.write(header)
            out.truncate(stat.st_size)
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def load_order(records: list[logging.LogRecord]) -> list[str]:
    """The run's phases and what it read, in order, from its log: the trainer's "phase: ..." lines, each encoder
    read on first use ("loading vae (first use ...)"), each expert read ("loading transformer from ...") and the
    encoders' release after caching."""
    wanted = ("phase:", "loading ", "caching done:")
    return [r.getMessage() for r in records if r.getMessage().startswith(wanted)]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_cache_script_then_training_and_resume_read_no_text_encoder(tiny_model_dir, tmp_path, caplog):
    base = shutil.copytree(tiny_model_dir("TI2V-5B"), tmp_path / "model")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run", max_steps=2)
    config.sampling.samples, config.sampling.sample_at_end, config.sampling.sample_before_training = (
        [tiny_sample()],
        True,
        False,
    )
    config.backup.every_steps = 1
    config_file = tmp_path / "config.json"
    save_config(config, config_file)

    cached = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cache.py"), "--config-path", str(config_file)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cached.returncode == 0, cached.stderr
    assert "Cache ready: 1 training windows" in cached.stdout and "1 latents" in cached.stdout

    # Reference: the same training on the real files, the encoders still readable.
    reference = GenericTrainer(lora_config(base, tmp_path / "data", tmp_path / "reference", max_steps=2))
    reference.config.sampling = config.sampling
    reference.config.data.cache_dir = str(tmp_path / "run" / "cache")
    expected = reference.train()

    hollow_out(base / "text_encoder")  # from here on, a read of UMT5 would change every caption and prompt
    trainer = GenericTrainer(config)
    with caplog.at_level(logging.INFO, logger="wan_trainer"):
        trainer.load_and_cache()
    # The run's own caching phase found every entry: no encoder was read, before or after the transformer loaded.
    assert load_order(caplog.records)[:2] == [
        "phase: caching (encoders only; the model loads after they are released)",
        "phase: loading the model",
    ]
    assert not any("(first use" in line for line in load_order(caplog.records))
    result = trainer.train()
    assert trainer.data.stats.videos_encoded == 0 and trainer.data.stats.texts_encoded == 0  # nothing rebuilt
    assert trainer.model.encoder_part("text_encoder").reads == 0
    assert trainer.model.resident("text_encoder") is None and trainer.model.resident("vae") is None
    assert result.losses == expected.losses
    (sample,) = result.sample_files
    assert sample.read_bytes() == expected.sample_files[0].read_bytes()

    config.training.max_steps, config.backup.continue_last_backup = 3, True
    resumed = GenericTrainer(config)
    resumed_result = resumed.train()
    assert resumed_result.steps == 3 and resumed.model.encoder_part("text_encoder").reads == 0
    assert resumed.data.stats.texts_encoded == 0


def test_a_run_on_an_incomplete_cache_caches_before_the_transformer_loads(tiny_model_dir, tmp_path, caplog):
    """The host peak is the larger of caching and loading, not their sum: the run caches with UMT5 and the VAE
    alone, releases them, and only then reads the transformer, which then needs neither encoder."""
    config = lora_config(tiny_model_dir("TI2V-5B"), one_clip(tmp_path / "data"), tmp_path / "run", max_steps=1)
    config.sampling.samples = [tiny_sample()]
    trainer = GenericTrainer(config)
    with caplog.at_level(logging.INFO, logger="wan_trainer"):
        trainer.load_and_cache()
    order = load_order(caplog.records)
    assert order[0].startswith("phase: caching (encoders only")
    reads = sorted(line.split()[1] for line in order[1:3])
    assert reads == ["text_encoder", "vae"] and all("(first use" in line for line in order[1:3])
    assert order[3].startswith("caching done: ") and "text_encoder" in order[3] and "vae" in order[3]
    assert order[4:6] == ["phase: loading the model", f"loading transformer from {config.model.base_path}/transformer"]
    assert len(order) == 6  # nothing read after the transformer: the trained model's encoders were never loaded
    stats = trainer.data.stats
    assert (stats.videos_encoded, stats.texts_encoded, stats.prompts_encoded) == (1, 1, 2)
    for name in ("text_encoder", "vae"):
        assert trainer.model.encoder_part(name).reads == 0 and trainer.model.resident(name) is None
    assert set(trainer.model.prompt_embeds) == {"a red circle moves", "blurry"}  # samples need no UMT5


def test_validation_clips_are_cached_before_the_transformer_loads(tiny_model_dir, tmp_path, caplog):
    config = lora_config(tiny_model_dir("TI2V-5B"), one_clip(tmp_path / "data"), tmp_path / "run", max_steps=1)
    config.sampling.validation_concept = str(one_clip(tmp_path / "held_out", color="green"))
    (tmp_path / "held_out" / "clip.txt").write_text("a green circle moves")
    trainer = GenericTrainer(config)
    with caplog.at_level(logging.INFO, logger="wan_trainer"):
        trainer.train()
    order = load_order(caplog.records)
    model_phase = order.index("phase: loading the model")
    # Both caches were incomplete: the training clips and the held-out ones are cached with one read of each
    # encoder, released once after both.
    first_reads = sorted(line.split()[1] for line in order[:model_phase] if "(first use" in line)
    assert first_reads == ["text_encoder", "vae"]
    assert sum(line.startswith("caching done: ") for line in order[:model_phase]) == 1
    # The validation loss found its clips cached: the trained model read neither encoder, before or after.
    assert not any("(first use" in line for line in order[model_phase:])
    assert trainer.sample_hooks.validation.data.stats.videos_encoded == 0
    assert trainer.sample_hooks.validation.data.stats.texts_encoded == 0
    assert trainer.model.encoder_part("text_encoder").reads == 0 and trainer.model.encoder_part("vae").reads == 0


def test_samples_equal_with_encoders_resident_or_freed_after_caching(tiny_model_dir, tmp_path):
    base = tiny_model_dir("TI2V-5B")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run")
    config.sampling.samples = [tiny_sample()]
    model = load_wan_model(base, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, text_max_length=16)
    assert model.resident("text_encoder") is None and model.resident("vae") is None  # read on first use only
    resident = generate_float_frames(model, config.sampling.samples[0])  # the pipeline runs UMT5 itself
    assert model.resident("text_encoder") is not None and model.encoder_part("text_encoder").reads == 1

    umt5 = weakref.ref(model.text_encoder)
    weights = weakref.ref(next(model.text_encoder.parameters()))
    WanBaseDataLoader().prepare(model, config, torch.device("cpu"))  # caches the sample prompts, frees UMT5
    gc.collect()
    assert umt5() is None and weights() is None  # no reference left anywhere
    assert set(model.prompt_embeds) == {"a red circle moves", "blurry"}

    freed = generate_float_frames(model, config.sampling.samples[0])
    assert model.encoder_part("text_encoder").reads == 1  # not read again: the prompts were cached
    assert np.array_equal(freed, resident)


def test_releasing_umt5_returns_its_memory(tiny_model_dir):
    """At test scale (a 134 MB float32 UMT5): resident memory rises by about its size and drops back on release."""
    model = load_wan_model(tiny_model_dir("TI2V-5B"), text_max_length=16)
    config = UMT5Config(vocab_size=32000, d_model=512, d_ff=2048, num_layers=4, num_heads=8, d_kv=64)
    model.set_encoder_source("text_encoder", lambda: UMT5EncoderModel(config), torch.float32)
    gc.collect()
    before = rss_bytes()
    size = sum(p.numel() * p.element_size() for p in model.text_encoder.parameters())
    loaded = rss_bytes()
    assert model.release_encoders(("text_encoder",)) == ["text_encoder"]
    after = rss_bytes()
    assert size > 100e6 and loaded - before > 0.8 * size
    assert loaded - after > 0.8 * size, f"released {(loaded - after) / 1e6:.0f} MB of {size / 1e6:.0f} MB"


def test_a_cache_built_first_with_a_frozen_embedding_is_the_training_runs(tiny_model_dir, tmp_path):
    """build_cache (scripts/cache.py) loads the same embeddings as training, so its caption keys are the run's."""
    from modules.wan.embeddings.vectors import initial_vectors, save_embedding_file

    base = tiny_model_dir("TI2V-5B")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run", max_steps=1)
    config.data.concepts[0].caption_text = "<concept> moves"
    model = load_wan_model(base, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
    embedding = save_embedding_file(tmp_path / "e.safetensors", "<concept>", initial_vectors(model, "red", 1))
    config.embedding.frozen_embeddings = [str(embedding)]
    built = GenericTrainer(config).build_cache()
    assert built.stats.texts_encoded == 1 and built.stats.videos_encoded == 1
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    assert trainer.data.stats.texts_encoded == 0 and trainer.data.stats.videos_encoded == 0
