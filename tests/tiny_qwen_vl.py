"""Tiny, randomly initialised Qwen-VL checkpoints written to disk like real ones: the real model classes from
their transformers configs at tiny sizes, with a byte-level BPE tokenizer built with the `tokenizers` library.

`write_tiny_processor` adds the processor files a real checkpoint ships: preprocessor_config.json written by
transformers' own (PIL) image processor, a chat template, and for Qwen3-VL a video_preprocessor_config.json."""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
SPECIAL += ["<|image_pad|>", "<|video_pad|>"]
PATCH = 8
PIXELS = {"shortest_edge": 16 * 16, "longest_edge": 16 * 16 * 48}  # at most 48 merged patches a frame
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
        "bos_token_id": ids["<|endoftext|>"],
        "initializer_range": 0.5,
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
    # A wide weight spread (real checkpoints use 0.02) so the random model's words depend on the pixels: captions
    # of different clips differ, which the batching test needs to mean anything.
    # Patches of 8 pixels (real: 14 or 16): the test buckets, multiples of 16, then need no resize.
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 32}
    vision["patch_size"] = PATCH
    vision["initializer_range"] = 0.5
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


CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.content is string %}{{ message.content }}{% else %}{% for part in message.content %}"
    "{% if part.type == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part.text }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_tiny_processor(folder: Path, model_type: str = "qwen2_5_vl") -> None:
    """The processor files of a real checkpoint, for the tiny model's patch size: the image processor's config
    saved by transformers' own PIL image processor, the chat template as chat_template.jinja, and (Qwen3-VL,
    whose checkpoints ship one) a video processor config with the same keys as the real one."""
    import json

    from transformers import Qwen2VLImageProcessorPil

    mean = [0.5, 0.5, 0.5] if model_type == "qwen3_vl" else None  # Qwen3-VL normalises around 0.5
    norm = {"image_mean": mean, "image_std": mean} if mean else {}
    Qwen2VLImageProcessorPil(size=PIXELS, patch_size=PATCH, **norm).save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    if model_type == "qwen3_vl":
        video = {"video_processor_type": "Qwen3VLVideoProcessor", "patch_size": PATCH, "temporal_patch_size": 2}
        video |= {"merge_size": 2, "size": {"shortest_edge": PIXELS["shortest_edge"], "longest_edge": 16 * 1024}}
        video |= {"image_mean": mean, "image_std": mean, "fps": 2, "do_sample_frames": True}
        (folder / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2), encoding="utf-8")
