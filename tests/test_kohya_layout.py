"""The kohya / musubi-tuner LoRA layout (`lora_unet_blocks_0_self_attn_q.lora_down.weight` + `.alpha`).

The naming rule is written out here as the layout publishes it ("lora_unet_" + the original module path with "."
replaced by "_"), and ComfyUI's key rule for it likewise (every `diffusion_model.<name>.weight` of the model is
reachable as `lora_unet_<name with _>`), independently of the project's tables. A file written in each layout
loads back to the same adapter; diffusers' own loader reads kohya files (tests/test_lora_format.py).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors import safe_open
from safetensors.torch import save_file

from modules.module.lora import attach_lora, lora_state_dict, set_lora_state_dict
from modules.util.resources import MODEL_CONFIGS_DIR
from modules.wan.formats.key_map import diffusers_to_original_key, kohya_to_original_module, original_module_to_kohya
from modules.wan.formats.lora_compatibility import linear_shapes, read_lora_info, shape_problems
from modules.wan.formats.lora_file import LoraFileError, load_lora_file, save_lora_file
from modules.wan.formats.lycoris_keys import from_comfyui_variant_state_dict, read_tensors
from tests.test_lora_format import forward, transformer_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def published_kohya_name(original_module: str) -> str:
    return "lora_unet_" + original_module.replace(".", "_")


@pytest.fixture(scope="module")
def a14b_linears() -> dict[str, tuple[int, int]]:
    """Every linear of a real-shaped T2V-A14B expert (built on the meta device: no memory, real names and shapes)."""
    config = json.loads((MODEL_CONFIGS_DIR / "transformer_T2V-A14B.json").read_text())
    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(config)
    return linear_shapes(model)


def test_every_module_of_the_real_expert_maps_both_ways(a14b_linears):
    assert len(a14b_linears) > 400  # 40 blocks x 10 linears, plus the embedders and the head
    for module in a14b_linears:
        original = diffusers_to_original_key(module)
        kohya = published_kohya_name(original)
        assert original_module_to_kohya(original) == kohya
        assert original_module_to_kohya(f"diffusion_model.{original}") == kohya
        assert kohya_to_original_module(kohya) == original
    with pytest.raises(KeyError):
        kohya_to_original_module("lora_unet_double_blocks_0_img_attn_qkv")  # a Flux name: no WAN module


def write_header_only_file(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """A valid safetensors file with these bf16 tensors, its data left sparse (zeros, no disk use)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2 * int(torch.Size(shape).numel())
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(text)) + text)
        file.truncate(8 + len(text) + offset)


def test_a_real_shaped_kohya_header_fits_every_layer(a14b_linears, tmp_path):
    rank = 32
    shapes: dict[str, tuple[int, ...]] = {}
    for module, (out_features, in_features) in a14b_linears.items():
        name = published_kohya_name(diffusers_to_original_key(module))
        shapes[f"{name}.lora_down.weight"] = (rank, in_features)
        shapes[f"{name}.lora_up.weight"] = (out_features, rank)
        shapes[f"{name}.alpha"] = ()
    path = tmp_path / "kohya_a14b_header.safetensors"
    write_header_only_file(path, shapes)
    info = read_lora_info(path)
    assert set(info.shapes) == set(shapes)
    assert shape_problems(info, a14b_linears) == []
    # One layer's shape wrong: named.
    wrong = dict(shapes)
    first = next(iter(a14b_linears))
    key = f"{published_kohya_name(diffusers_to_original_key(first))}.lora_down.weight"
    wrong[key] = (rank, 7)
    write_header_only_file(path, wrong)
    assert [p for p in shape_problems(read_lora_info(path), a14b_linears) if key in p]


def file_keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as file:
        return list(file.keys())


def comfyui_rule_names(transformer: WanTransformer3DModel) -> set[str]:
    """ComfyUI's key rule for this layout: each `diffusion_model.<name>.weight` answers to `lora_unet_<name_>`."""
    names = set()
    for key in transformer.state_dict():
        if key.endswith(".weight"):
            names.add("lora_unet_" + diffusers_to_original_key(key).removesuffix(".weight").replace(".", "_"))
    return names


@pytest.fixture(scope="module")
def ti2v(tiny_model_dir) -> Path:
    return tiny_model_dir("TI2V-5B")


@pytest.mark.parametrize(
    "kind,rank,dora", [("lora", 4, False), ("lora", 4, True), ("loha", 4, False), ("lokr", 3, False)]
)
def test_every_type_round_trips_through_the_kohya_layout(ti2v, tmp_path, kind, rank, dora):
    alpha = 3.0
    ours = WanTransformer3DModel.from_pretrained(ti2v, subfolder="transformer")
    attach_lora(ours, rank=rank, alpha=alpha, kind=kind, use_dora=dora)
    generator = torch.Generator().manual_seed(5)
    state = {k: torch.randn(v.shape, generator=generator) * 0.2 for k, v in lora_state_dict(ours).items()}
    set_lora_state_dict(ours, state)
    inputs = transformer_inputs(ours)
    expected = forward(ours.eval(), inputs)

    path = save_lora_file(
        lora_state_dict(ours), tmp_path / "k.safetensors", format="kohya", rank=rank, alpha=alpha, kind=kind
    )
    keys = file_keys(path)
    allowed = comfyui_rule_names(WanTransformer3DModel.from_pretrained(ti2v, subfolder="transformer"))
    assert keys and all(k.split(".", 1)[0] in allowed for k in keys), keys[:3]
    if kind == "lora":
        assert any(k.endswith(".lora_down.weight") for k in keys) and any(k.endswith(".alpha") for k in keys)
        loaded, metadata = load_lora_file(path)
        assert metadata["wan.lora_format"] == "kohya"
        loaded_kind, loaded_rank = "lora", int(metadata["ss_network_dim"])
        loaded_alpha = float(metadata["ss_network_alpha"])
    else:
        tensors, metadata = read_tensors(path)
        loaded_rank, loaded_alpha = rank, alpha
        loaded_kind, loaded = from_comfyui_variant_state_dict(tensors, rank, alpha)
    again = WanTransformer3DModel.from_pretrained(ti2v, subfolder="transformer")
    modules = sorted({k.rsplit(".lora_", 1)[0] if ".lora_" in k else k.rsplit(".", 1)[0] for k in loaded})
    modules = [m for m in modules if not m.endswith(".dora_scale")]
    attach_lora(again, rank=loaded_rank, alpha=loaded_alpha, kind=loaded_kind, use_dora=dora, target_modules=modules)
    set_lora_state_dict(again, loaded)
    torch.testing.assert_close(forward(again.eval(), inputs), expected, atol=1e-5, rtol=0)


def test_a_kohya_name_of_another_model_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "flux.safetensors"
    save_file(
        {
            "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(2, 4),
            "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.zeros(4, 2),
        },
        str(path),
    )
    with pytest.raises(LoraFileError, match="flux.safetensors.*WAN 2.2"):
        load_lora_file(path)
