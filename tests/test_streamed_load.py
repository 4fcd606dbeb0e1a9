"""fp8, int8 and nf4 storage from a diffusers folder or a single file stream tensor by tensor (no bf16 copy of the
expert), sharded or not, and give exactly the weights of the old path (from_pretrained into bf16, then quantised
layer by layer); int8/nf4 hold one block linear in 16 bits at a time, observed in the process's live tensors."""

from __future__ import annotations

import gc
import shutil
import weakref

import pytest
import torch
from diffusers import WanTransformer3DModel

from modules.module.bnb_linear import convert_to_quantised_storage, quantised_linear
from modules.module.fp8_linear import convert_to_fp8_storage, fp8_storage_names
from modules.wan.loading.loader import load_wan_model
from modules.wan.loading.part_folder import load_part_folder
from modules.wan.loading.single_file_writer import write_single_file
from tests.process_memory import anonymous_resident
from tests.test_quantised_base import needs_bitsandbytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bf16_experts(tiny_model_dir, tmp_path, shard_size: str | None):
    """The tiny A14B with both experts stored in bf16 as the Wan-AI repos store them, sharded or not."""
    base = shutil.copytree(tiny_model_dir("T2V-A14B"), tmp_path / "model")
    for part in ("transformer", "transformer_2"):
        folder = base / part
        expert = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
        shutil.rmtree(folder)
        expert.save_pretrained(folder, **({"max_shard_size": shard_size} if shard_size else {}))
    shards = sorted((base / "transformer").glob("*.safetensors"))
    assert (len(shards) > 1) == bool(shard_size)
    return base


@pytest.mark.parametrize("shard_size", [None, "20KB"])
def test_streamed_fp8_folder_equals_bf16_then_quantised(tiny_model_dir, tmp_path, shard_size):
    base = bf16_experts(tiny_model_dir, tmp_path, shard_size)

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


@needs_bitsandbytes
@pytest.mark.parametrize("kind, shard_size", [("int8", "20KB"), ("nf4", None)])
def test_int8_nf4_quantise_each_linear_as_it_is_read(tiny_model_dir, tmp_path, kind, shard_size):
    base = bf16_experts(tiny_model_dir, tmp_path, shard_size)
    empty = WanTransformer3DModel.from_pretrained(base / "transformer", torch_dtype=torch.bfloat16)
    block_linears = set(fp8_storage_names(empty))
    matrices = dict(empty.named_parameters())
    # Shapes only block linears have (the feed-forward pair): a live 16-bit tensor of such a shape is a block
    # linear's weight that is not quantised yet.
    only_in_blocks = {tuple(matrices[f"{name}.weight"].shape) for name in block_linears} - {
        tuple(p.shape) for name, p in matrices.items() if p.dim() == 2 and name.rpartition(".")[0] not in block_linears
    }
    assert only_in_blocks
    del empty, matrices
    gc.collect()

    received, alive_at_call = [], []

    def quantise(linear):
        assert linear.weight.dtype == torch.bfloat16 and not linear.weight.is_meta
        if tuple(linear.weight.shape) in only_in_blocks:
            alive_at_call.append(
                sum(
                    1
                    for o in gc.get_objects()
                    if issubclass(type(o), torch.Tensor)
                    and o.dtype == torch.bfloat16
                    and tuple(o.shape) in only_in_blocks
                )
            )
        # every 16-bit weight handed over before has been freed: quantised, not kept beside its copy
        assert all(ref() is None for ref in received), "an earlier layer's 16-bit weight is still alive"
        received.append(weakref.ref(linear.weight))
        return quantised_linear(linear, kind, torch.float32)

    model = load_wan_model(base, transformer_dtype=torch.bfloat16, quantise_linear=quantise)
    assert len(received) == 2 * len(block_linears)  # every block linear of both experts, each once
    assert alive_at_call and max(alive_at_call) == 1  # only the one being quantised, never the next ones read
    for part in ("transformer", "transformer_2"):
        reference = load_part_folder(base, part, WanTransformer3DModel, dtype=torch.bfloat16)
        convert_to_quantised_storage(reference, kind, torch.float32)
        expected, streamed = reference.state_dict(), getattr(model, part).state_dict()
        assert streamed.keys() == expected.keys()
        for name, tensor in expected.items():
            assert streamed[name].dtype == tensor.dtype and torch.equal(streamed[name], tensor), name


@needs_bitsandbytes
def test_int8_from_a_bf16_single_file_is_quantised_as_it_is_read(tiny_model_dir, tmp_path):
    base = tiny_model_dir("TI2V-5B")
    reference = load_wan_model(base, transformer_dtype=torch.bfloat16).transformer
    path = write_single_file(
        tmp_path / "wan2.2_ti2v_5B_bf16.safetensors", reference, "transformer", naming="original", dtype=torch.bfloat16
    )
    calls = []

    def quantise(linear):
        calls.append(linear.weight.dtype)
        return quantised_linear(linear, "int8", torch.float32)

    streamed = load_wan_model(base, transformer_dtype=torch.bfloat16, transformer_path=path, quantise_linear=quantise)
    assert calls == [torch.bfloat16] * len(fp8_storage_names(reference))
    # The old path: the whole expert read from the file in bf16, then quantised.
    reference = load_wan_model(base, transformer_dtype=torch.bfloat16, transformer_path=path).transformer
    convert_to_quantised_storage(reference, "int8", torch.float32)
    expected, got = reference.state_dict(), streamed.transformer.state_dict()
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name


def test_the_shards_of_a_folder_convert_through_one_scratch_buffer(tmp_path):
    """Quantising a folder reads each bf16 matrix into a scratch buffer: one for all shards, so a folder in three
    shards holds its fp8 matrices and one bf16 matrix, not one per shard (the Wan-AI A14B expert has six)."""
    from safetensors.torch import save_file

    from modules.wan.loading.part_load import read_fp8_weight
    from modules.wan.loading.weight_file import ShardedWeightFile

    shape, mib = (4096, 5120), 2**20  # 40 MiB in bf16, 20 MiB in fp8: above glibc's largest heap block
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"shard-{index}.safetensors")
        save_file(
            {f"blocks.{index}.ffn.weight": torch.full(shape, 0.01 * (index + 1), dtype=torch.bfloat16)}, paths[-1]
        )
    gc.collect()
    before = anonymous_resident()
    folder = ShardedWeightFile(paths, "transformer")
    stored = [read_fp8_weight(folder, f"blocks.{index}.ffn.weight") for index in range(3)]
    held = anonymous_resident() - before  # scratch buffers are held until the folder is closed
    folder.close()
    fp8_bytes = sum(weight.numel() for weight, _ in stored)
    assert fp8_bytes == 60 * mib
    assert held < fp8_bytes + 40 * mib + 8 * mib, held / mib  # the fp8 matrices and one bf16 scratch, not three
    for index, (weight, scale) in enumerate(stored):  # a constant matrix: its absmax maps to fp8's 448 exactly
        expected = torch.tensor(0.01 * (index + 1), dtype=torch.bfloat16).float()
        assert torch.allclose(weight.float() * scale, expected.expand(shape), rtol=1e-6, atol=0)
