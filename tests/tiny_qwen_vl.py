"""Tiny, randomly initialised Qwen-VL checkpoints written to disk like real ones: the real model classes from
their transformers configs at tiny sizes, with a byte-level BPE tokenizer built with the `tokenizers` library.

No processor is written: transformers' Qwen-VL processors need torchvision (see docs/dataset_tools.md)."""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
SPECIAL += ["<|image_pad|>", "<|video_pad|>"]
CORPUS = [
    "a red circle moves from left to right over a blue background",
    "a green square slides down; the camera is still, the light is soft and even",
    "Describe this video in detail: subjects, motion, camera, lighting, style.",
]


def write_tokenizer(folder: Path) -> dict[str, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL, initial_alphabet=alphabet)
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return {"vocab_size": bpe.get_vocab_size(), **{token: bpe.token_to_id(token) for token in SPECIAL}}


def _text(ids: dict[str, int], **extra) -> dict:
    return {
        "vocab_size": ids["vocab_size"],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        **extra,
    }


def _special(ids: dict[str, int]) -> dict:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": False,
    }


def write_tiny_qwen_vl(folder: Path, model_type: str = "qwen2_5_vl", seed: int = 0) -> Path:
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    ids = write_tokenizer(folder)
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 32}
    if model_type == "qwen2_5_vl":
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}
        config = transformers.Qwen2_5_VLConfig(
            text_config=_text(ids, rope_parameters=rope),
            vision_config={**vision, "fullatt_block_indexes": [1], "window_size": 56},
            **_special(ids),
        )
        model_class = transformers.Qwen2_5_VLForConditionalGeneration
    else:
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2], "mrope_interleaved": True}
        config = transformers.Qwen3VLConfig(
            text_config=_text(ids, head_dim=8, rope_parameters=rope),
            vision_config={**vision, "deepstack_visual_indexes": [1], "num_position_embeddings": 64},
            **_special(ids),
        )
        model_class = transformers.Qwen3VLForConditionalGeneration
    torch.manual_seed(seed)
    model_class(config).eval().save_pretrained(folder)
    return folder
