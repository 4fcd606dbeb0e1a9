"""fp8 storage from a diffusers folder streams tensor by tensor (no bf16 copy of the expert), sharded or not, and
gives exactly the weights of the old path (from_pretrained into bf16, then quantised layer by layer)."""

from __future__ import annotations

import shutil

import pytest
import torch
from diffusers import WanTransformer3DModel

from modules.module.fp8_linear import convert_to_fp8_storage
from modules.wan.loading.loader import load_wan_model
from modules.wan.loading.part_folder import load_part_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("shard_size", [None, "20KB"])
def test_streamed_fp8_folder_equals_bf16_then_quantised(tiny_model_dir, tmp_path, shard_size):
    base = shutil.copytree(tiny_model_dir("T2V-A14B"), tmp_path / "model")
    for part in ("transformer", "transformer_2"):  # the Wan-AI repos store the experts in bf16
        folder = base / part
        expert = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
        shutil.rmtree(folder)
        expert.save_pretrained(folder, **({"max_shard_size": shard_size} if shard_size else {}))
    shards = sorted((base / "transformer").glob("*.safetensors"))
    assert (len(shards) > 1) == bool(shard_size)

    model = load_wan_model(base, transformer_dtype=torch.float8_e4m3fn)
    for part in ("transformer", "transformer_2"):
        reference = load_part_folder(base, part, WanTransformer3DModel, dtype=torch.bfloat16)
        convert_to_fp8_storage(reference)
        expected = reference.state_dict()
        streamed = getattr(model, part).state_dict()
        assert streamed.keys() == expected.keys()
        for name, tensor in expected.items():
            assert streamed[name].dtype == tensor.dtype, name
            assert torch.equal(streamed[name].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)), name
