"""Caption dropout (data.caption_dropout, a concept's own): the share of clips trained with the empty prompt matches
the setting within a binomial bound, the empty prompt's encoding is UMT5's encoding of "" (as the pipelines'
unconditional branch has it) and is cached like any caption, the choice is a function of (seed, epoch, batch, place
in the batch), so a resumed run that skips into an epoch drops the same clips and several processes drop what one
would; a concept's own share overrides the run's clip by clip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from modules.config.train_config import ConceptConfig
from modules.data.sources.caption_dropout import drops_caption
from modules.trainer.generic_trainer import GenericTrainer
from tests.test_training import lora_config, one_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def within_binomial_bound(hits: int, n: int, rate: float, sigmas: float = 4.0) -> bool:
    return abs(hits / n - rate) <= sigmas * math.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_share_of_dropped_batches_matches_the_setting(rate):
    n = 20000
    hits = sum(drops_caption(42, epoch, index, rate) for epoch in range(200) for index in range(100))
    assert within_binomial_bound(hits, n, rate), hits / n
    assert not any(drops_caption(42, 0, i, 0.0) for i in range(1000))
    # Another seed drops other batches.
    assert [drops_caption(1, 0, i, rate) for i in range(200)] != [drops_caption(2, 0, i, rate) for i in range(200)]


def test_batches_train_with_the_cached_empty_prompt(tiny_model_dir, tmp_path):
    rate, epochs = 0.25, 400
    config = lora_config(tiny_model_dir("TI2V-5B"), one_clip(tmp_path / "data"), tmp_path / "run")
    config.data.caption_dropout = rate
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    data, model = trainer.data, trainer.model
    with torch.no_grad():
        empty = model.pad_text_embeds(model.encode_text([""]))
        caption = model.pad_text_embeds(model.encode_text(["a red circle moves"]))
    assert not torch.equal(empty, caption)
    dropped = []
    for epoch in range(epochs):
        (batch,) = list(data.batches(epoch))  # one clip: one batch per epoch
        is_empty = torch.equal(batch["text_embeds"], empty)
        assert is_empty or torch.equal(batch["text_embeds"], caption)
        assert batch["captions"] == ([""] if is_empty else ["a red circle moves"])
        dropped.append(is_empty)
    assert dropped == [drops_caption(config.training.seed, e, 0, rate) for e in range(epochs)]
    assert within_binomial_bound(sum(dropped), epochs, rate), sum(dropped) / epochs

    again = GenericTrainer(config)  # same cache: the empty prompt is not encoded again
    again.load_and_cache()
    assert again.data.stats.texts_encoded == 0


def two_concepts(tiny_model_dir, tmp_path, red_rate, green_rate, run_rate: float):
    """Two one-clip concepts with their own captions (and shares, None: the run's) in batches of two."""
    config = lora_config(tiny_model_dir("TI2V-5B"), one_clip(tmp_path / "red"), tmp_path / "run", batch_size=2)
    config.data.caption_dropout = run_rate
    config.data.concepts = [
        ConceptConfig(str(tmp_path / "red"), caption_source="text", caption_text="a red circle moves",
                      caption_dropout=red_rate),
        ConceptConfig(str(one_clip(tmp_path / "green", color="green")), caption_source="text",
                      caption_text="a green circle moves", caption_dropout=green_rate),
    ]  # fmt: skip
    return config


def captions_per_epoch(data, epochs: int) -> list[dict[str, str]]:
    """Each epoch's {source folder: caption trained}, whichever process's share each clip was in."""
    return [
        {Path(source).parent.name: caption for source, caption in zip(batch["sources"], batch["captions"])}
        for epoch in range(epochs)
        for batch in data.batches(epoch)
    ]


def test_a_concepts_own_share_overrides_the_runs_clip_by_clip(tiny_model_dir, tmp_path):
    config = two_concepts(tiny_model_dir, tmp_path, red_rate=0.0, green_rate=None, run_rate=1.0)
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    seen = captions_per_epoch(trainer.data, 20)
    # Both clips in every batch of two: red (its own share, 0) keeps its caption, green (the run's, 1) never does.
    assert seen == [{"red": "a red circle moves", "green": ""}] * 20


def test_clips_drop_alone_and_as_one_process_would_when_the_batch_is_shared(tiny_model_dir, tmp_path):
    epochs, rate = 60, 0.5
    config = two_concepts(tiny_model_dir, tmp_path, red_rate=None, green_rate=None, run_rate=rate)
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    whole = captions_per_epoch(trainer.data, epochs)
    # Clip by clip: some batches keep one caption and drop the other (batch by batch would never mix them).
    assert any(sorted(e.values()) == ["", "a green circle moves"] for e in whole)
    assert any(sorted(e.values()) == ["", "a red circle moves"] for e in whole)
    dropped = sum(caption == "" for e in whole for caption in e.values())
    assert within_binomial_bound(dropped, 2 * epochs, rate), dropped / (2 * epochs)
    shares = []
    for rank in range(2):  # each process with half of every step's batch: the union is the one-process run
        data = trainer.plugin.data_loader()
        data.share_between(rank, 2)
        data.prepare(trainer.model, config, trainer.device)
        shares.append(captions_per_epoch(data, epochs))
    assert [{**a, **b} for a, b in zip(*shares)] == whole
