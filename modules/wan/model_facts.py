"""WAN 2.2's numbers for the memory planner (modules/memory/facts.py) counted from configs, and those of a loaded
WanModel (`loaded_model_facts`, reached as WanModel.memory_facts()): from its parts' own configs, or for an encoder
that is not in memory, its model folder's (or the real one in resources/model_configs/). Parameter counts come from
building each part on the meta device (no memory, no weights read), so they are the real modules' counts. Below
loading: modules/wan/memory_facts.py adds the facts of a config before anything loads.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from modules.memory.facts import ModelFacts, TextEncoderFacts, TransformerFacts, VaeFacts
from modules.util.resources import MODEL_CONFIGS_DIR
from modules.wan.variants import WanVariant


def part_config_in(folder: Path | None, variant: WanVariant, part: str) -> str:
    """A model folder's `<part>/config.json`, else the real variant's (resources/model_configs)."""
    if folder is not None and (folder / part / "config.json").is_file():
        return (folder / part / "config.json").read_text(encoding="utf-8")
    name = {
        "transformer": f"transformer_{variant.name}.json",
        "vae": "vae_wan2.2.json" if variant.latent_channels == 48 else "vae_wan2.1.json",
        "text_encoder": "text_encoder_umt5-xxl.json",
    }[part]
    return (MODEL_CONFIGS_DIR / name).read_text(encoding="utf-8")


def _public(config_text: str) -> dict:
    return {k: v for k, v in json.loads(config_text).items() if not k.startswith("_")}


@lru_cache(maxsize=8)
def transformer_facts(config_text: str, per_token_modulation: bool) -> TransformerFacts:
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel
    from torch import nn

    from modules.module.lora import DEFAULT_TARGET_MODULES

    with init_empty_weights():
        model = WanTransformer3DModel.from_config(_public(config_text))
    keep = set(model._keep_in_fp32_modules)

    def fp32(name: str) -> bool:
        return any(part in keep for part in name.split("."))

    block = model.blocks[0]
    linears = [m for m in block.modules() if isinstance(m, nn.Linear)]
    targets = [
        m for n, m in block.named_modules() if any(n == t or n.endswith("." + t) for t in DEFAULT_TARGET_MODULES)
    ]
    outside = [(n, p) for n, p in model.named_parameters() if not n.startswith("blocks.")]
    return TransformerFacts(
        num_blocks=len(model.blocks),
        dim=model.config.num_attention_heads * model.config.attention_head_dim,
        ffn_dim=model.config.ffn_dim,
        heads=model.config.num_attention_heads,
        block_params=sum(p.numel() for p in block.parameters()),
        block_linear_params=sum(m.weight.numel() for m in linears),
        block_linears=len(linears),
        block_fp32_params=sum(p.numel() for n, p in block.named_parameters() if fp32(n)),
        other_params=sum(p.numel() for n, p in outside if not fp32(n)),
        other_fp32_params=sum(p.numel() for n, p in outside if fp32(n)),
        lora_params_per_rank=len(model.blocks) * sum(m.in_features + m.out_features for m in targets),
        largest_linear=max(m.weight.numel() for m in linears),
        per_token_modulation=per_token_modulation,
    )


@lru_cache(maxsize=8)
def text_encoder_facts(config_text: str, max_tokens: int) -> TextEncoderFacts:
    from accelerate import init_empty_weights
    from transformers import UMT5Config, UMT5EncoderModel

    settings = _public(config_text)
    with init_empty_weights():
        model = UMT5EncoderModel(UMT5Config(**settings))
    model.tie_weights()  # shared = encoder.embed_tokens, as a loaded model has it: the table counts once (1 B params)
    return TextEncoderFacts(
        params=sum(p.numel() for p in model.parameters()),
        embedding_params=model.shared.weight.numel(),
        dim=settings["d_model"],
        ffn_dim=settings["d_ff"],
        heads=settings["num_heads"],
        layers=settings["num_layers"],
        max_tokens=max_tokens,
    )


@lru_cache(maxsize=8)
def vae_facts(config_text: str) -> VaeFacts:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan

    settings = _public(config_text)
    settings.pop("clip_output", None)  # in the Wan2.2 config, unknown to diffusers' class
    with init_empty_weights():
        model = AutoencoderKLWan.from_config(settings)
    base = settings.get("base_dim", 96)
    return VaeFacts(
        params=sum(p.numel() for p in model.parameters()),
        encoder_channels=base,
        decoder_channels=settings.get("decoder_base_dim") or base,
        patch=settings.get("patch_size") or 1,
        temporal_chunk=4,
    )


def loaded_model_facts(model) -> ModelFacts:
    """Facts of a loaded WanModel, from the configs of its parts as loaded: nothing is re-detected from paths, so a
    hub id with model.variant=auto plans as the model it loaded."""
    return model_facts_from(
        model.variant,
        _config_text(model.transformer.config),
        _encoder_config(model, "text_encoder"),
        _encoder_config(model, "vae"),
        model.text_max_length,
    )


def _encoder_config(model, part: str) -> str:
    """The encoder's config as loaded when it is resident, else its model folder's (or the real one): encoders are
    read on first use and released between phases (encoder_parts.py), and planning must not read one."""
    module = model.resident(part)
    if module is not None:
        config = module.config
        return _config_text(config.to_dict() if hasattr(config, "to_dict") else config)
    folder = Path(model.model_path) if model.model_path and Path(model.model_path).is_dir() else None
    return part_config_in(folder, model.variant, part)


def _config_text(config) -> str:
    # The cached builders key on the text; sorted keys make equal configs one key.
    return json.dumps(dict(config), sort_keys=True, default=str)


def model_facts_from(variant: WanVariant, transformer: str, text_encoder: str, vae: str, max_tokens: int) -> ModelFacts:
    experts = transformer_facts(transformer, variant.expand_timesteps)
    return ModelFacts(
        name=variant.name,
        experts=(experts,) * variant.num_experts,
        text_encoder=text_encoder_facts(text_encoder, max_tokens),
        vae=vae_facts(vae),
        pixels_per_token=variant.pixel_multiple,
        frames_per_latent=variant.vae_stride_temporal,
        extra_condition_frames=1 if variant.image_conditioning == "channel_concat" else 0,
    )
