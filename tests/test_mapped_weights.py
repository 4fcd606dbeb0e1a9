"""Weights mapped from their file (memory.map_weights, modules/module/mapped_weights.py): bit-equal to copied ones,
file-backed in the kernel's accounting, never written back, unaligned tensors copied and counted, back on the
mapping after a trip off the CPU, and a training run resumed from a backup with mapping on ends where one with
mapping off ends."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel

from modules.module.block_swap import BlockSwapper
from modules.module.mapped_weights import is_mapped, mapped_bytes, move_module, remember_mapped
from modules.wan.formats.headers import TensorReader, read_header
from modules.wan.loading.loader import load_wan_model
from modules.wan.loading.single_file_writer import write_single_file
from tests.test_both_experts import make_trainer
from tests.test_fp8_storage import write_fp8_scaled_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def region_of(path: Path) -> dict[str, int]:
    """Summed smaps fields (kB) of this process's mappings of `path`: Rss, Anonymous, ..."""
    totals: dict[str, int] = {}
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            inside = line.rstrip().endswith(str(path))
        elif inside and head and head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
            totals[head[0][:-1]] = totals.get(head[0][:-1], 0) + int(head[1])
    return totals


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fp8_scaled_file(tiny_model_dir, tmp_path_factory):
    base = tiny_model_dir("TI2V-5B")
    _, path = write_fp8_scaled_file(base, tmp_path_factory.mktemp("mapped"))
    return base, path


def load(base, path, dtype, mapped):
    return load_wan_model(base, transformer_dtype=dtype, transformer_path=path, map_weights=mapped).transformer


def test_mapped_fp8_and_bf16_weights_equal_copied_ones_and_are_file_backed(fp8_scaled_file, tmp_path):
    base, path = fp8_scaled_file
    bf16_path = write_single_file(
        tmp_path / "wan2.2_ti2v_5B_bf16.safetensors",
        load(base, path, torch.bfloat16, False),
        "transformer",
        naming="original",
        dtype=torch.bfloat16,
    )
    for file, dtype in ((path, torch.float8_e4m3fn), (bf16_path, torch.bfloat16)):
        copied, mapped = load(base, file, dtype, False), load(base, file, dtype, True)
        a, b = copied.state_dict(), mapped.state_dict()
        assert a.keys() == b.keys()
        for name in a:
            assert a[name].dtype == b[name].dtype, name
            assert torch.equal(a[name].reshape(-1).view(torch.uint8), b[name].reshape(-1).view(torch.uint8)), name
        on_map, off_map = mapped_bytes(mapped)
        assert mapped_bytes(copied)[0] == 0
        # Every block matrix is kept in the file's dtype, so it is a view of the mapping.
        linears = [m.weight for n, m in mapped.named_modules() if n.startswith("blocks.") and hasattr(m, "in_features")]
        assert linears and all(is_mapped(w) for w in linears)
        assert on_map >= sum(w.numel() * w.element_size() for w in linears)
        # The kernel's view: the pages read are the file's (Rss of its mapping), none of them the process's own.
        touched = sum(float(w.detach().float().sum()) for w in linears)
        assert touched == touched  # read every page of every matrix
        region = region_of(file)
        assert region.get("Rss", 0) > 0 and region.get("Anonymous", 0) == 0, region
        del copied, mapped


def test_an_in_place_write_to_a_mapped_weight_never_reaches_the_file(fp8_scaled_file):
    base, path = fp8_scaled_file
    before = digest(path)
    transformer = load(base, path, torch.float8_e4m3fn, True)
    weight = transformer.blocks[0].ffn.net[0].proj.weight  # fp8, frozen, a view of the mapping
    assert is_mapped(weight) and not weight.requires_grad
    original = weight.detach().clone()
    weight.detach().view(torch.uint8).add_(1)  # a frozen weight written in place (by mistake, or a merge)
    assert not torch.equal(weight.view(torch.uint8), original.view(torch.uint8)) and is_mapped(weight)
    assert region_of(path).get("Anonymous", 0) > 0  # copy-on-write: the written pages became private
    assert digest(path) == before
    fresh = load(base, path, torch.float8_e4m3fn, True)
    assert torch.equal(
        fresh.blocks[0].ffn.net[0].proj.weight.view(torch.uint8), original.view(torch.uint8)
    )  # another load reads the file's bytes


def test_unaligned_tensors_are_copied_and_counted(tmp_path):
    values = {"a": torch.arange(3, dtype=torch.uint8), "b": torch.arange(5, dtype=torch.bfloat16)}
    header = {"a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]}}
    header["b"] = {"dtype": "BF16", "shape": [5], "data_offsets": [3, 13]}  # starts at an odd offset
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = tmp_path / "odd.safetensors"
    path.write_bytes(
        struct.pack("<Q", len(raw))
        + raw
        + values["a"].numpy().tobytes()
        + values["b"].view(torch.uint8).numpy().tobytes()
    )
    reader = TensorReader(read_header(path), map_weights=True)
    a, b = reader.read("a"), reader.read("b")
    assert torch.equal(a, values["a"]) and torch.equal(b, values["b"])
    assert is_mapped(a) and not is_mapped(b)
    assert (reader.mapping.mapped, reader.mapping.copied) == (1, 1)


def test_weights_come_back_to_the_mapping_after_a_trip_off_the_cpu(fp8_scaled_file):
    base, path = fp8_scaled_file
    expert = load(base, path, torch.float8_e4m3fn, True).requires_grad_(False)
    before = mapped_bytes(expert)
    values = {n: t.clone() for n, t in expert.state_dict().items()}
    remember_mapped(expert)  # what move_module does as the expert leaves for the GPU
    for tensor in (*expert.parameters(), *expert.buffers()):
        tensor.data = tensor.data.clone()  # what .to("cpu") of its device copy would give: the process's own memory
    assert mapped_bytes(expert)[0] == 0
    move_module(expert, "cpu")
    assert mapped_bytes(expert) == before and before[0] > 0
    assert all(torch.equal(values[n], t) for n, t in expert.state_dict().items())


def test_resume_with_mapped_weights_ends_where_a_run_without_them_ends(tiny_model_dir, demo_data_dir, tmp_path):
    base = tiny_model_dir("T2V-A14B")
    reference = load_wan_model(base, transformer_dtype=torch.float32)
    files = {
        part: write_single_file(
            tmp_path / f"{part}.safetensors",
            getattr(reference, part),
            "transformer",
            naming="original",
            dtype=torch.float32,
        )
        for part in ("transformer", "transformer_2")
    }
    common = (
        f"model.transformer_path={files['transformer']}",
        f"model.transformer_2_path={files['transformer_2']}",
        "backup.before_save=true",
    )

    def run(workspace: str, mapped: bool, steps: int, resume: bool) -> tuple[dict, list[float]]:
        trainer = make_trainer(
            base,
            demo_data_dir,
            tmp_path / "cache",
            tmp_path / workspace,
            *common,
            f"memory.map_weights={str(mapped).lower()}",
            f"training.max_steps={steps}",
            f"backup.continue_last_backup={str(resume).lower()}",
        )
        assert (mapped_bytes(trainer.model.transformer_2)[0] > 0) == mapped
        losses = []
        trainer.step_callbacks.append(lambda progress, loss: losses.append(float(loss)))
        trainer.train()
        state = {k: v.detach().clone() for k, v in trainer.setup.trainable_state_dict(trainer.model).items()}
        return state, losses

    plain, plain_losses = run("plain", False, 4, False)
    _, first_losses = run("mapped", True, 2, False)  # stops at step 2 with a backup
    resumed, resumed_losses = run("mapped", True, 4, True)
    assert len(plain_losses) == 4 and first_losses + resumed_losses == plain_losses
    assert plain.keys() == resumed.keys()
    assert all(torch.equal(plain[k], resumed[k]) for k in plain)


def test_swapped_blocks_stay_on_the_mapping(fp8_scaled_file):
    base, path = fp8_scaled_file
    expert = load(base, path, torch.float8_e4m3fn, True).requires_grad_(False)
    swapper = BlockSwapper(expert.blocks, [len(expert.blocks) - 1], staging=True)
    matrices = [slot.storage for slot in swapper.slots[len(expert.blocks) - 1] if slot.storage.dim() == 2]
    assert matrices and all(is_mapped(storage) for storage in matrices)  # no copy of the swapped weights was made


def test_a_bf16_diffusers_folder_into_bf16_is_mapped_and_equals_from_pretrained(tiny_model_dir, tmp_path):
    base = shutil.copytree(tiny_model_dir("TI2V-5B"), tmp_path / "model")
    folder = base / "transformer"
    expert = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
    shutil.rmtree(folder)
    expert.save_pretrained(folder, max_shard_size="20KB")  # sharded, as the Wan-AI repos are
    copied = load_wan_model(base, transformer_dtype=torch.bfloat16, map_weights=False).transformer
    mapped = load_wan_model(base, transformer_dtype=torch.bfloat16, map_weights=True).transformer
    a, b = copied.state_dict(), mapped.state_dict()
    assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    assert mapped_bytes(mapped)[0] > 0 and mapped_bytes(copied)[0] == 0
