"""The ComfyUI node (integrations/comfyui) and the diffusers helper make a trained UMT5 embedding change WAN
conditioning exactly as the trainer's own encoding does.

CI has no ComfyUI, so ComfyUI's side is written here from its source (comfy/sd1_clip.py at commit b55c2247,
comfy/text_encoders/wan.py at 3c67f615 of comfyanonymous/ComfyUI) over this project's tiny UMT5: a tokenizer
object with the attribute layout of ComfyUI's WanT5Tokenizer (`clip_umt5xxl`, `embedding_directory`,
`embedding_key`, `embedding_size`) whose `embedding:NAME` rule is SDTokenizer's (words tokenized one by one
without their end token, the file's vectors put in between, one end token last), and an encoder step that is
SDClipModel's (vectors as extra embedding rows, the whole sequence attended). The node itself is the real one,
imported from the package as ComfyUI imports it.
"""

from __future__ import annotations

import inspect
import logging
import re

import pytest
import torch
from diffusers import WanPipeline
from safetensors.torch import load_file
from transformers import T5TokenizerFast, UMT5EncoderModel

from integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from integrations.comfyui.embedding_files import referenced_names
from modules.wan.embeddings.diffusers_pipeline import add_embedding_to_pipeline, pipeline_prompt
from modules.wan.embeddings.vectors import expand_prompt, load_embedding, save_embedding_file
from modules.wan.loading.loader import load_wan_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
IDENTIFIER = "embedding:"


class ComfyRuleUMT5Tokenizer:
    """ComfyUI's UMT5XXlTokenizer contract: its attributes and SDTokenizer's `embedding:` rule (see module doc)."""

    embedding_key = "umt5xxl"

    def __init__(self, tokenizer: T5TokenizerFast, width: int):
        self.tokenizer, self.embedding_size, self.embedding_directory = tokenizer, width, None

    def _vectors(self, name: str):
        for directory in self.embedding_directory:
            for candidate in (f"{directory}/{name}", f"{directory}/{name}.safetensors"):
                try:
                    return next(iter(load_file(candidate).values()))
                except (FileNotFoundError, IsADirectoryError):
                    continue
        return None

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False):
        split = re.split(f" {IDENTIFIER}|\n{IDENTIFIER}", text)
        words = [w for w in [split[0], *(IDENTIFIER + s for s in split[1:])] if w]
        tokens: list = []
        for word in words:
            if word.startswith(IDENTIFIER) and self.embedding_directory is not None:
                name, _, leftover = word[len(IDENTIFIER) :].partition(" ")
                vectors = self._vectors(name)
                if vectors is not None:
                    tokens.extend(vectors)
                if not leftover:
                    continue
                word = leftover
            tokens.extend(self.tokenizer(word).input_ids[:-1])  # the word's tokens without its end token
        tokens.append(self.tokenizer.eos_token_id)
        return [[(token, 1.0) for token in tokens]]


class ComfyRuleWanTokenizer:
    """ComfyUI's WanT5Tokenizer (an SD1Tokenizer): the UMT5 tokenizer under `clip_umt5xxl`."""

    def __init__(self, tokenizer: T5TokenizerFast, width: int):
        self.clip_umt5xxl = ComfyRuleUMT5Tokenizer(tokenizer, width)

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False):
        return {"umt5xxl": self.clip_umt5xxl.tokenize_with_weights(text, return_word_ids)}


class ComfyRuleClip:
    """The two members of ComfyUI's CLIP the node uses; clone() shares the tokenizer, as ComfyUI's does."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def clone(self):
        return ComfyRuleClip(self.tokenizer)


@torch.no_grad()
def comfy_rule_encode(encoder: UMT5EncoderModel, tokens: dict) -> torch.Tensor:
    """SDClipModel: ids look up the table, inserted vectors are rows of their own; returns (tokens, dim)."""
    table = encoder.get_input_embeddings().weight
    rows = [table[t] if isinstance(t, int) else t.to(table.dtype) for t, _ in tokens["umt5xxl"][0]]
    embeds = torch.stack(rows)[None]
    mask = torch.ones(embeds.shape[:2], dtype=torch.long)
    return encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state[0]


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    folder = tiny_model_dir("TI2V-5B")
    directory = tmp_path_factory.mktemp("embeddings")
    trainer_model = load_wan_model(folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
    width = trainer_model.text_encoder.get_input_embeddings().embedding_dim
    vectors = torch.randn(2, width, generator=torch.Generator().manual_seed(5))
    path = save_embedding_file(directory / "concept.safetensors", "<concept>", vectors)
    save_embedding_file(directory / "narrow.safetensors", "<narrow>", torch.randn(2, width + 3))
    load_embedding(trainer_model, path)
    expected = trainer_model.encode_text([expand_prompt(trainer_model, "a <concept> moves")])[0]
    tokenizer = T5TokenizerFast.from_pretrained(folder / "tokenizer")
    encoder = UMT5EncoderModel.from_pretrained(folder / "text_encoder").eval()
    return dict(folder=folder, directory=directory, path=path, expected=expected, tokenizer=tokenizer,
                encoder=encoder, width=width)  # fmt: skip


def test_node_follows_comfyuis_node_interface():
    assert NODE_CLASS_MAPPINGS.keys() == NODE_DISPLAY_NAME_MAPPINGS.keys()
    for node_class in NODE_CLASS_MAPPINGS.values():
        inputs = node_class.INPUT_TYPES()
        assert set(inputs) <= {"required", "optional", "hidden"}
        assert inputs["required"]["clip"] == ("CLIP",)
        assert inputs["required"]["embedding_directory"][0] == "STRING"
        assert node_class.RETURN_TYPES == ("CLIP",) and isinstance(node_class.CATEGORY, str)
        function = getattr(node_class(), node_class.FUNCTION)
        names = [n for group in inputs.values() for n in group]
        assert list(inspect.signature(function).parameters) == names  # ComfyUI calls it with these keywords


def test_node_makes_an_embedding_condition_exactly_as_the_trainer(setup):
    node = NODE_CLASS_MAPPINGS["WanUMT5Embeddings"]()
    clip = ComfyRuleClip(ComfyRuleWanTokenizer(setup["tokenizer"], setup["width"]))
    prompt = "a embedding:concept moves"
    (enabled,) = node.enable(clip=clip, embedding_directory=str(setup["directory"]))
    got = comfy_rule_encode(setup["encoder"], enabled.tokenizer.tokenize_with_weights(prompt))
    assert got.shape == setup["expected"].shape
    torch.testing.assert_close(got, setup["expected"], atol=1e-6, rtol=1e-5)

    # Without the node ComfyUI reads `embedding:concept` as words; the original CLIP is left that way.
    before = comfy_rule_encode(setup["encoder"], clip.tokenizer.tokenize_with_weights(prompt))
    assert clip.tokenizer.clip_umt5xxl.embedding_directory is None
    assert before.shape != got.shape or (before - got).abs().max() > 1e-3


def test_node_warns_about_missing_and_unfitting_embeddings(setup, caplog):
    node = NODE_CLASS_MAPPINGS["WanUMT5Embeddings"]()
    clip = ComfyRuleClip(ComfyRuleWanTokenizer(setup["tokenizer"], setup["width"]))
    (enabled,) = node.enable(clip=clip, embedding_directory=str(setup["directory"]))
    with caplog.at_level(logging.WARNING):
        enabled.tokenizer.tokenize_with_weights("a (embedding:nothere:1.2) embedding:narrow, embedding:concept moves")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2, messages
    assert "embedding:nothere was not found" in messages[0] and str(setup["directory"]) in messages[0]
    assert "Fix:" in messages[0]
    assert "embedding:narrow" in messages[1] and f"width {setup['width']}" in messages[1]
    with pytest.raises(ValueError, match="no WAN UMT5 tokenizer"):
        node.enable(clip=ComfyRuleClip(setup["tokenizer"]), embedding_directory=str(setup["directory"]))


def test_referenced_names_follow_comfyuis_syntax():
    assert referenced_names("embedding:a x embedding:b, (embedding:c:0.8)\nembedding:d") == ["a", "b", "c", "d"]
    assert referenced_names("myembedding:x and embedding:") == []


def test_diffusers_helper_conditions_a_wan_pipeline_as_the_trainer(setup):
    pipe = WanPipeline.from_pretrained(setup["folder"])
    assert add_embedding_to_pipeline(pipe, setup["path"]) == ["<concept>", "<concept>_1"]
    prompt = pipeline_prompt(pipe, "a <concept> moves")
    assert prompt == "a <concept> <concept>_1 moves"
    embeds, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=64)
    expected = setup["expected"]
    torch.testing.assert_close(embeds[0, : expected.shape[0]], expected)  # float32 rounding apart
    plain, _ = WanPipeline.from_pretrained(setup["folder"]).encode_prompt(
        "a <concept> moves", do_classifier_free_guidance=False, max_sequence_length=64
    )
    assert (plain[0, : expected.shape[0]] - expected).abs().max() > 1e-3
