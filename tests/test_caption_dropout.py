"""Caption dropout (data.caption_dropout): the share of batches trained with the empty prompt matches the setting
within a binomial bound, the empty prompt's encoding is UMT5's encoding of "" (as the pipelines' unconditional
branch has it) and is cached like any caption, and the choice is a function of (seed, epoch, batch), so a resumed
run that skips into an epoch drops the same batches."""

from __future__ import annotations

import math

import pytest
import torch

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
