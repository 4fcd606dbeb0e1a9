"""key_map against diffusers' own single-file converter (an independent reference for original -> diffusers)."""

from __future__ import annotations

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

from modules.wan.formats.key_map import (
    diffusers_to_original_key,
    diffusers_to_original_state_dict,
    original_to_diffusers_key,
    original_to_diffusers_state_dict,
)
from modules.wan.tiny_models import build_transformer
from modules.wan.variants import VARIANTS


@pytest.fixture(scope="module", params=["TI2V-5B", "T2V-A14B", "I2V-A14B"])
def diffusers_sd(request) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_transformer(VARIANTS[request.param]).state_dict()


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_diffusers_converter_undoes_our_conversion(diffusers_sd, prefix):
    original = {prefix + k: v for k, v in diffusers_to_original_state_dict(diffusers_sd).items()}
    back = convert_wan_transformer_to_diffusers(dict(original))
    assert set(back) == set(diffusers_sd)
    for key, value in diffusers_sd.items():
        assert torch.equal(back[key], value), key


def test_round_trips(diffusers_sd):
    original = diffusers_to_original_state_dict(diffusers_sd)
    assert original_to_diffusers_state_dict(original).keys() == diffusers_sd.keys()
    prefixed = {"diffusion_model." + k: v for k, v in original.items()}
    assert diffusers_to_original_state_dict(original_to_diffusers_state_dict(prefixed)).keys() == original.keys()


@pytest.mark.parametrize(
    ("diffusers", "original"),
    [
        ("blocks.3.attn1.to_q.weight", "blocks.3.self_attn.q.weight"),
        ("blocks.3.attn1.to_out.0.bias", "blocks.3.self_attn.o.bias"),
        ("blocks.3.attn2.to_v", "blocks.3.cross_attn.v"),
        ("blocks.3.attn1.norm_k.weight", "blocks.3.self_attn.norm_k.weight"),
        ("blocks.3.norm2.weight", "blocks.3.norm3.weight"),
        ("blocks.3.ffn.net.0.proj.lora_A.weight", "blocks.3.ffn.0.lora_A.weight"),
        ("blocks.3.ffn.net.2", "blocks.3.ffn.2"),
        ("blocks.3.scale_shift_table", "blocks.3.modulation"),
        ("scale_shift_table", "head.modulation"),
        ("proj_out.weight", "head.head.weight"),
        ("condition_embedder.time_proj.bias", "time_projection.1.bias"),
        ("condition_embedder.text_embedder.linear_2.weight", "text_embedding.2.weight"),
        ("condition_embedder.time_embedder.linear_1.weight", "time_embedding.0.weight"),
        ("patch_embedding.weight", "patch_embedding.weight"),
    ],
)
def test_single_names(diffusers, original):
    assert diffusers_to_original_key(diffusers) == original
    assert original_to_diffusers_key(original) == diffusers
    assert original_to_diffusers_key("diffusion_model." + original) == diffusers


@pytest.mark.parametrize("key", ["blocks.0.attn3.to_q.weight", "encoder.weight", "blocks.0.ffn.net.1.weight"])
def test_unknown_names_raise(key):
    with pytest.raises(KeyError):
        diffusers_to_original_key(key)
