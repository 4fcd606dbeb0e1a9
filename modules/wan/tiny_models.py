"""Tiny, seeded, randomly initialised WAN 2.2 models in the real diffusers folder layout.

They are built from the real diffusers/transformers classes with the real structural settings of each
variant (channels, patch size, VAE kind, experts, boundary) and only small widths and depths, so that
every code path that loads a real checkpoint loads these too. The tokenizer is trained here with the
`tokenizers` library (a SentencePiece-style unigram model with T5's special tokens), since none can
be downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLWan,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

from modules.wan.loading.part_folder import official_scheduler
from modules.wan.variants import VARIANTS, WanVariant

TEXT_DIM = 32
# Room in the embedding table beyond the trained vocabulary, like UMT5's padded 256,384-row table.
TEXT_VOCAB_SIZE = 256

_TOKENIZER_CORPUS = [
    "a red circle moves from left to right over a blue gradient",
    "a green square bounces up and down slowly",
    "a yellow triangle spins in the middle of a dark frame",
    "a white ball rolls across a purple background while the camera stays still",
    "two orange shapes slide past each other, video, smooth motion, high quality",
    "still image of a cyan rectangle on a pink background",
]


def build_tokenizer() -> T5TokenizerFast:
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(_TOKENIZER_CORPUS * 10, trainer)
    # T5 appends </s> to every sequence; UMT5's pad id is 0 and eos id is 1, as here.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tokenizer, extra_ids=0, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def build_text_encoder() -> UMT5EncoderModel:
    config = UMT5Config(
        vocab_size=TEXT_VOCAB_SIZE,
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config)


def build_vae(
    variant: WanVariant,
    generator: torch.Generator,
    base_dim: int = 16,
    decoder_base_dim: int | None = None,
    num_res_blocks: int = 1,
    dim_mult: tuple[int, ...] = (1, 1, 1, 1),
) -> AutoencoderKLWan:
    sizes = dict(base_dim=base_dim, num_res_blocks=num_res_blocks, dim_mult=list(dim_mult))
    if variant.latent_channels == 48:
        # The Wan2.2 VAE: residual, pixel patches of 2, 12 channels in and out, 16x spatial stride.
        # Its per-channel statistics are random but fixed, so normalisation is really exercised.
        mean = (torch.randn(48, generator=generator) * 0.5).tolist()
        std = (torch.rand(48, generator=generator) * 1.5 + 0.5).tolist()
        return AutoencoderKLWan(
            **sizes,
            decoder_base_dim=decoder_base_dim or base_dim,
            z_dim=48,
            is_residual=True,
            patch_size=2,
            in_channels=12,
            out_channels=12,
            scale_factor_spatial=16,
            latents_mean=mean,
            latents_std=std,
        )
    # The Wan2.1 VAE used by both A14B models (its default statistics are the real ones).
    return AutoencoderKLWan(**sizes, decoder_base_dim=decoder_base_dim, z_dim=16)


def build_transformer(
    variant: WanVariant, num_layers: int = 2, heads: int = 2, head_dim: int = 16
) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=variant.transformer_in_channels,
        out_channels=variant.transformer_out_channels,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=2 * heads * head_dim,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
    )


def build_tiny_pipeline(
    variant_name: str, seed: int = 0, transformer_size: dict | None = None, vae_size: dict | None = None
):
    """The tiny model as an in-memory diffusers pipeline (WanPipeline or WanImageToVideoPipeline).

    `transformer_size` (num_layers, heads, head_dim) and `vae_size` (base_dim, decoder_base_dim,
    num_res_blocks, dim_mult) make larger models for benchmarks.
    """
    variant = VARIANTS[variant_name]
    transformer_size = transformer_size or {}
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    parts = dict(
        tokenizer=build_tokenizer(),
        text_encoder=build_text_encoder(),
        vae=build_vae(variant, generator, **(vae_size or {})),
        scheduler=official_scheduler(variant),
        transformer=build_transformer(variant, **transformer_size),
        transformer_2=build_transformer(variant, **transformer_size) if variant.has_transformer_2 else None,
        boundary_ratio=variant.boundary_ratio,
        expand_timesteps=variant.expand_timesteps,
    )
    if variant.image_conditioning == "channel_concat":
        return WanImageToVideoPipeline(image_processor=None, image_encoder=None, **parts)
    return WanPipeline(**parts)


def write_tiny_model(variant_name: str, out_dir: Path, seed: int = 0, **sizes) -> Path:
    """Write the tiny model as a diffusers folder (model_index.json + one subfolder per part)."""
    out_dir = Path(out_dir)
    build_tiny_pipeline(variant_name, seed, **sizes).save_pretrained(out_dir, safe_serialization=True)
    return out_dir
