"""Embedding training (textual inversion on UMT5): it overfits one clip, only its rows change, its file reloads
to the same text-encoder output (ours and diffusers' pipeline's), and caption caches follow the embedding."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

from modules.config.sampling_config import SampleConfig
from modules.config.train_config import TrainConfig
from modules.data.sources.demo_data import DemoClip, write_clip
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.embeddings.text import encode_text_with_vectors
from modules.wan.embeddings.vectors import (
    EmbeddingError,
    add_embedding,
    expand_prompt,
    initial_vectors,
    load_embedding,
    read_embedding_file,
    save_embedding_file,
)
from modules.wan.loading.loader import load_wan_model
from modules.wan.sampling.sampler import SamplerOptions, WanModelSampler, generate_float_frames
from tests.config_builders import tiny_run_config

TEXT_TOKENS = 32  # model.text_max_length: short captions keep the tiny UMT5 fast
PROMPT = "a <concept> moves"
# sigma 0: the denoiser sees the clean clip and must name the noise; with a fixed noise per caption only the
# caption tells which noise, so a denoiser trained that way depends on its text, as a real WAN model does.
SIGMA = torch.tensor([0.0])
CAPTION_SEEDS = {"a red circle moves": 0, "a green square moves": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_config(method: str, base: Path, workspace: Path, captions: list[str], data: Path) -> TrainConfig:
    concepts = [{"path": data, "caption_source": "text", "caption_text": c} for c in captions]
    config = tiny_run_config(
        base, workspace, concepts, method=method, cache_dir=workspace.parent / "cache", text_max_length=TEXT_TOKENS
    )
    config.training.weight_decay, config.training.max_grad_norm, config.training.max_steps = 0.0, 0.0, 2
    return config


def clip_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    write_clip(DemoClip("clip", "circle", "red", "blue", 32, 32, 9, 16), folder)
    return folder


def fixed_loss(trainer: GenericTrainer, batch: dict, seed: int) -> torch.Tensor:
    prediction = trainer.setup.predict(
        trainer.model,
        batch,
        trainer.config,
        trainer.progress,
        torch.Generator().manual_seed(seed),
        deterministic_timesteps=SIGMA,
    )
    return trainer.setup.calculate_loss(trainer.model, batch, prediction, trainer.config)


def overfit(trainer: GenericTrainer, steps: int, batches: list[dict]) -> None:
    for _ in range(steps):
        for batch in batches:
            fixed_loss(trainer, batch, CAPTION_SEEDS.get(batch["captions"][0], 0)).backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()


def text_conditioned_transformer(base: Path, data: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    """The tiny transformer, fully fine-tuned until its prediction depends on the caption."""
    config = make_config("full", base, tmp_path / "pretrain", list(CAPTION_SEEDS), data)
    config.training.learning_rate = 3e-3
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    trainer.set_up_training()
    overfit(trainer, 60, list(trainer.data.batches(0)))
    return trainer.model.transformer.state_dict()


def parameters(model) -> dict[str, torch.Tensor]:
    return {
        f"{part}.{k}": v.detach().clone()
        for part in ("text_encoder", "transformer", "vae")
        for k, v in getattr(model, part).state_dict().items()
    }


def test_embedding_overfits_one_clip_changes_only_its_rows_and_reloads(tiny_model_dir, tmp_path):
    base, data = tiny_model_dir("TI2V-5B"), clip_folder(tmp_path)
    denoiser = text_conditioned_transformer(base, data, tmp_path)

    config = make_config("embedding", base, tmp_path / "run", [PROMPT], data)
    config.embedding.num_vectors, config.embedding.init_text = 2, "green square"  # starts at the other caption
    config.training.learning_rate = 0.05
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    trainer.model.transformer.load_state_dict(denoiser)
    trainer.set_up_training()
    before = parameters(trainer.model)
    vocabulary = trainer.model.tokenizer.get_vocab()
    (batch,) = list(trainer.data.batches(0))
    with torch.no_grad():
        initial = fixed_loss(trainer, batch, 0).item()
    overfit(trainer, 40, [batch])
    with torch.no_grad():
        final = fixed_loss(trainer, batch, 0).item()
    assert final <= 0.5 * initial, (initial, final)

    (saved,) = trainer.save(tmp_path / "concept.safetensors")
    after = parameters(trainer.model)
    ids = trainer.setup.embedding.token_ids
    assert trainer.model.tokenizer.get_vocab() == vocabulary
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed <= {"text_encoder.shared.weight", "text_encoder.encoder.embed_tokens.weight"} and changed
    table_before, table_after = before["text_encoder.shared.weight"], after["text_encoder.shared.weight"]
    others = torch.ones(table_before.shape[0], dtype=torch.bool)
    others[ids] = False
    assert torch.equal(table_before[others], table_after[others])
    assert not torch.equal(table_before[ids], table_after[ids])

    # The file reloads into a fresh model to the same text-encoder output, and a diffusers pipeline built over
    # that model encodes the prompt the same way with no extra step.
    placeholder, vectors, metadata = read_embedding_file(saved)
    assert placeholder == "<concept>" and vectors.shape == (2, table_after.shape[1])
    assert metadata["wan.embedding_num_vectors"] == "2"
    expected = trainer.model.encode_text([expand_prompt(trainer.model, PROMPT)])[0]
    with torch.no_grad():
        direct = encode_text_with_vectors(trainer.model, [PROMPT], trainer.setup.embedding, trainer.setup.vectors)[0]
    assert torch.equal(direct, expected)
    fresh = load_wan_model(
        base, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, text_max_length=TEXT_TOKENS
    )
    load_embedding(fresh, saved)
    prompt = expand_prompt(fresh, PROMPT)
    assert prompt == "a <concept> <concept>_1 moves"
    assert torch.equal(fresh.encode_text([prompt])[0], expected)
    pipe = WanPipeline(
        tokenizer=fresh.tokenizer,
        text_encoder=fresh.text_encoder,
        vae=fresh.vae,
        transformer=fresh.transformer,
        scheduler=fresh.scheduler,
    )
    embeds, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=TEXT_TOKENS)
    torch.testing.assert_close(embeds[0, : expected.shape[0]].detach(), expected)  # float32 rounding apart
    with pytest.raises(EmbeddingError, match="already known"):
        load_embedding(fresh, saved)

    # A later run continues from the file: it starts at the saved vectors.
    again = make_config("embedding", base, tmp_path / "run2", [PROMPT], data)
    again.embedding.continue_from = str(saved)
    resumed = GenericTrainer(again)
    resumed.load_and_cache()
    resumed.set_up_training()
    assert torch.equal(resumed.setup.vectors.detach(), vectors)


def test_caption_cache_follows_the_embedding_and_a_lora_trains_over_it(tiny_model_dir, tmp_path):
    base, data = tiny_model_dir("TI2V-5B"), clip_folder(tmp_path)
    model = load_wan_model(
        base, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, text_max_length=TEXT_TOKENS
    )
    first = save_embedding_file(tmp_path / "one.safetensors", "<concept>", initial_vectors(model, "red", 1))
    second = save_embedding_file(tmp_path / "two.safetensors", "<concept>", initial_vectors(model, "blue", 1))

    def encoded_captions(embedding: Path | None) -> tuple[int, torch.Tensor]:
        config = make_config("lora", base, tmp_path / "run", [PROMPT], data)
        config.embedding.frozen_embeddings = [str(embedding)] if embedding else []
        trainer = GenericTrainer(config)
        trainer.load_and_cache()
        (batch,) = list(trainer.data.batches(0))
        return trainer.data.stats.texts_encoded, batch["text_embeds"][0]

    plain_count, plain = encoded_captions(None)
    one_count, one = encoded_captions(first)
    two_count, _ = encoded_captions(second)
    again_count, again = encoded_captions(first)
    assert (plain_count, one_count, two_count, again_count) == (1, 1, 1, 0)
    assert not torch.equal(plain, one) and torch.equal(one, again)
    reference = load_wan_model(
        base, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, text_max_length=TEXT_TOKENS
    )
    load_embedding(reference, first)
    assert torch.equal(one, reference.pad_text_embeds(reference.encode_text([PROMPT]))[0])

    # A LoRA run with the embedding frozen: trains end to end, and the embedding's rows stay as loaded.
    config = make_config("lora", base, tmp_path / "lora", [PROMPT], data)
    config.embedding.frozen_embeddings = [str(first)]
    config.lora.rank = 4
    trainer = GenericTrainer(config)
    result = trainer.train()
    assert result.steps == 2 and result.output_files[0].name == "lora.safetensors"
    _, vectors, _ = read_embedding_file(first)
    row = trainer.model.tokenizer.convert_tokens_to_ids("<concept>")
    assert torch.equal(trainer.model.text_encoder.get_input_embeddings().weight[row], vectors[0])


def test_bad_embedding_input_is_named(tiny_model_dir, tmp_path):
    model = load_wan_model(tiny_model_dir("TI2V-5B"), transformer_dtype=torch.float32, text_max_length=TEXT_TOKENS)
    with pytest.raises(EmbeddingError, match="do not fit"):
        add_embedding(model, "<x>", torch.zeros(1, 7))
    with pytest.raises(EmbeddingError, match="already known"):
        add_embedding(model, "<unk>", torch.zeros(1, model.text_encoder.config.d_model))
    with pytest.raises(EmbeddingError, match="no such embedding file"):
        load_embedding(model, tmp_path / "missing.safetensors")


def test_sampler_loads_an_embedding_file_and_expands_its_placeholder(tiny_model_dir, tmp_path):
    """A user passes the embedding file to the sampler and writes only `<concept>` in the prompt; the sampler
    loads the file and sends every token of the embedding.

    Reference: a diffusers user's path written without our loader: `WanPipeline.from_pretrained`, the tokens
    added to its tokenizer and their rows set by hand, called with the fully written prompt."""
    base = tiny_model_dir("TI2V-5B")
    model = load_wan_model(
        base, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, text_max_length=TEXT_TOKENS
    )
    vectors = torch.randn(2, model.text_encoder.config.d_model, generator=torch.Generator().manual_seed(3)) * 4
    file = save_embedding_file(tmp_path / "concept.safetensors", "<concept>", vectors)
    sample = SampleConfig(
        prompt=PROMPT,
        negative_prompt="",
        width=32,
        height=32,
        frames=5,
        seed=1,
        steps=2,
        guidance_scale=1.0,
        scheduler="euler",
        flow_shift=3.0,
    )
    sampler = WanModelSampler(SamplerOptions(format="png", embeddings=[str(file)]))
    written = sampler.sample(model, sample, tmp_path / "sample")
    ours = sampler.last_result.video.astype(int)
    sidecar = json.loads(sampler.last_result.sidecar.read_text())
    assert sidecar["embeddings"] == [{"path": str(file), "placeholder": "<concept>", "vectors": 2}], written

    pipe = WanPipeline.from_pretrained(base, dtype=torch.float32)
    pipe.tokenizer.add_tokens(["<concept>", "<concept>_1"])
    ids = pipe.tokenizer.convert_tokens_to_ids(["<concept>", "<concept>_1"])
    with torch.no_grad():
        pipe.text_encoder.get_input_embeddings().weight[ids] = vectors
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipe.set_progress_bar_config(disable=True)

    def reference(prompt: str) -> np.ndarray:
        return pipe(
            prompt=prompt,
            width=32,
            height=32,
            num_frames=5,
            num_inference_steps=2,
            guidance_scale=1.0,
            generator=torch.Generator("cpu").manual_seed(1),
            output_type="np",
            max_sequence_length=TEXT_TOKENS,
        ).frames[0]

    expected = reference("a <concept> <concept>_1 moves")
    # The written frames: equal up to a value rounding either way at a .5 level boundary.
    assert np.abs(ours - (np.clip(expected, 0, 1) * 255).round().astype(int)).max() <= 1
    # The float frames (the embedding now loaded into the model by the sampler) show it exactly; the tiny model
    # is weakly text-conditioned, so the unexpanded prompt differs only in floats, not in 8-bit levels.
    floats = generate_float_frames(model, sample)
    np.testing.assert_allclose(floats, expected, atol=1e-5)
    assert np.abs(floats - reference(PROMPT)).max() > 1e-3  # the unexpanded prompt would give another video
    assert expand_prompt(model, PROMPT) == "a <concept> <concept>_1 moves"
    assert expand_prompt(model, expand_prompt(model, PROMPT)) == expand_prompt(model, PROMPT)  # never doubled
