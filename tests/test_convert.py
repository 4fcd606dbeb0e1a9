"""scripts/convert_model.py: LoRA layouts and full-model formats survive round trips exactly."""

import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from modules.module.lora import attach_lora, lora_state_dict
from modules.wan.formats.lora_file import ALPHA_KEY, RANK_KEY, load_lora_file, save_lora_file
from modules.wan.formats.model_files import read_transformer_folder, save_single_file
from modules.wan.loading.loader import load_wan_model

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import convert_model  # noqa: E402


def test_lora_round_trip_between_comfyui_and_diffusers(tiny_model_dir, tmp_path):
    transformer = load_wan_model(tiny_model_dir("TI2V-5B"), transformer_dtype=torch.float32).transformer
    attach_lora(transformer, rank=4, alpha=2.0)
    generator = torch.Generator().manual_seed(0)
    lora = {k: torch.randn(v.shape, generator=generator) for k, v in lora_state_dict(transformer).items()}
    comfy = save_lora_file(lora, tmp_path / "comfy.safetensors", rank=4, alpha=2.0, metadata={"wan.seed": "5"})

    # Through the command line once, as a user runs it.
    diffusers_file = tmp_path / "diffusers.safetensors"
    done = subprocess.run(
        [sys.executable, "scripts/convert_model.py", "lora", str(comfy), str(diffusers_file), "--format", "diffusers"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with safe_open(str(diffusers_file), framework="pt") as file:
        assert all(k.startswith("transformer.blocks.") for k in file.keys())
    back = convert_model.convert_lora(diffusers_file, tmp_path / "back.safetensors", "comfyui")
    for path in (diffusers_file, back):
        state_dict, metadata = load_lora_file(path)
        assert set(state_dict) == set(lora) and all(torch.equal(state_dict[k], lora[k]) for k in lora)
        assert (metadata[RANK_KEY], float(metadata[ALPHA_KEY]), metadata["wan.seed"]) == ("4", 2.0, "5")
    with safe_open(str(back), framework="pt") as a, safe_open(str(comfy), framework="pt") as b:
        assert set(a.keys()) == set(b.keys())


def test_full_model_round_trip_folder_single_file_folder(tiny_model_dir, tmp_path):
    base = tiny_model_dir("T2V-A14B")
    original, _ = read_transformer_folder(base / "transformer_2")
    single = convert_model.folder_to_single_file(base, tmp_path / "low.safetensors", "transformer_2", "float32")
    with safe_open(str(single), framework="pt") as file:
        assert "blocks.0.self_attn.q.weight" in file.keys() and "head.modulation" in file.keys()
    folder = convert_model.single_file_to_folder(single, tmp_path / "model", base, "transformer_2", "float32")
    restored, _ = read_transformer_folder(folder / "transformer_2")
    assert set(restored) == set(original) and all(torch.equal(restored[k], original[k]) for k in original)
    model = load_wan_model(folder, transformer_dtype=torch.float32)  # a whole, loadable model
    assert torch.equal(model.transformer_2.state_dict()["proj_out.weight"], original["proj_out.weight"])

    half = convert_model.folder_to_single_file(folder, tmp_path / "half.safetensors", "transformer_2", "float16")
    with safe_open(str(half), framework="pt") as file:
        assert torch.equal(file.get_tensor("head.head.weight"), original["proj_out.weight"].half())

    # A file of another expert size or variant is refused with the reason.
    other = save_single_file({k: v for k, v in original.items() if k != "proj_out.bias"}, tmp_path / "bad.safetensors")
    assert convert_model.main(["to-diffusers", str(other), str(tmp_path / "bad"), "--base", str(base)]) == 2
