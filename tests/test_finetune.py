"""Full fine-tuning: only the chosen blocks/experts change, the single file is what diffusers and ComfyUI read,
and the saved diffusers folder is a base model of a later run."""

from pathlib import Path

import pytest
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from safetensors import safe_open

from modules.config.train_config import TrainConfig
from modules.data.sources.demo_data import DemoClip, write_clip
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.formats.key_map import diffusers_to_original_key
from modules.wan.loading.loader import load_wan_model
from modules.wan.saving.full_saver import WanFineTuneSaver, diffusers_folder_for
from modules.wan.training.full_setup import block_filter_matcher
from tests.config_builders import tiny_run_config


def one_clip(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_clip(DemoClip("clip", "circle", "red", "blue", 32, 32, 9, 16), folder)
    return folder


def finetune_config(base: Path, data: Path, workspace: Path, **finetune) -> TrainConfig:
    config = tiny_run_config(
        base, workspace, [{"path": data}], method="full", cache_dir=workspace / "cache", max_steps=2, learning_rate=1e-3
    )
    for key, value in finetune.items():
        setattr(config.finetune, key, value)
    return config


def weights(folder: Path, subfolder: str) -> dict[str, torch.Tensor]:
    return WanTransformer3DModel.from_pretrained(folder, subfolder=subfolder, local_files_only=True).state_dict()


def test_block_filter_reads_indices_ranges_and_names():
    matches = block_filter_matcher("0-1, 3, ffn", num_blocks=4)
    assert (
        matches("blocks.0.attn1.to_q.weight")
        and matches("blocks.1.norm2.bias")
        and matches("blocks.3.attn2.to_k.weight")
    )
    assert not matches("blocks.2.attn1.to_q.weight") and matches("blocks.2.ffn.net.2.weight")
    assert not matches("patch_embedding.weight")
    with pytest.raises(ValueError, match="finetune.block_filter"):
        block_filter_matcher("2-9", num_blocks=4)


def test_ti2v_finetune_trains_the_chosen_block_and_saves_both_layouts(tiny_model_dir, tmp_path):
    base = tiny_model_dir("TI2V-5B")
    config = finetune_config(base, one_clip(tmp_path / "data"), tmp_path / "run", block_filter="1")
    result = GenericTrainer(config).train()
    single, folder = result.output_files
    assert single == tmp_path / "run" / "output" / "full.safetensors" and folder == diffusers_folder_for(single)

    before, after = weights(base, "transformer"), weights(folder, "transformer")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("blocks.1.") for k in changed)
    assert set(before) == set(after)

    # The single file: original WAN names, and diffusers' own single-file loader reads our weights back exactly.
    with safe_open(str(single), framework="pt") as file:
        keys = set(file.keys())
    assert keys == {diffusers_to_original_key(k) for k in after}
    assert {
        "blocks.1.self_attn.q.weight",
        "blocks.1.norm3.weight",
        "head.modulation",
        "time_embedding.0.weight",
    } <= keys
    loaded = WanTransformer3DModel.from_single_file(
        str(single), config=str(folder), subfolder="transformer", local_files_only=True, torch_dtype=torch.float32
    ).state_dict()
    assert set(loaded) == set(after) and all(torch.equal(loaded[k], after[k]) for k in after)

    # The folder is a whole model: diffusers builds its pipeline, and it is the base of a second run.
    assert isinstance(WanPipeline.from_pretrained(folder, local_files_only=True), WanPipeline)
    reloaded = load_wan_model(folder, transformer_dtype=torch.float32)
    assert all(torch.equal(reloaded.transformer.state_dict()[k], after[k]) for k in after)
    second = finetune_config(folder, tmp_path / "data", tmp_path / "run2")
    second.training.max_steps = 1
    assert GenericTrainer(second).train().steps == 1


def test_a14b_finetune_of_one_expert_in_bfloat16(tiny_model_dir, tmp_path):
    base = tiny_model_dir("T2V-A14B")
    config = finetune_config(base, one_clip(tmp_path / "data"), tmp_path / "run")
    config.experts.train = "low_noise"
    config.output.save_dtype = "bfloat16"
    result = GenericTrainer(config).train()
    single, folder = result.output_files
    assert single.name == "full_low_noise.safetensors"

    # The high-noise expert did not train: linked from the base unchanged. The low-noise one changed everywhere
    # the optimizer reaches (an empty filter trains every weight).
    assert (folder / "transformer" / "diffusion_pytorch_model.safetensors").samefile(
        base / "transformer" / "diffusion_pytorch_model.safetensors"
    )
    with safe_open(str(folder / "transformer_2" / "diffusion_pytorch_model.safetensors"), framework="pt") as file:
        assert {file.get_slice(k).get_dtype() for k in file.keys()} == {"BF16"}
    before, after = weights(base, "transformer_2"), weights(folder, "transformer_2")
    after = {k: v.bfloat16() for k, v in after.items()}  # from_pretrained upcasts to float32 exactly
    changed = {k for k in before if not torch.equal(before[k].bfloat16(), after[k])}
    assert any(k.startswith("blocks.0.") for k in changed) and any(k.startswith("blocks.1.") for k in changed)

    with safe_open(str(single), framework="pt") as file:
        assert file.metadata()["wan.expert"] == "low_noise"
    loaded = WanTransformer3DModel.from_single_file(
        str(single), config=str(folder), subfolder="transformer_2", local_files_only=True, torch_dtype=torch.bfloat16
    ).state_dict()
    assert all(torch.equal(loaded[k], after[k]) for k in after)


def test_full_model_saved_in_float16_reads_back_in_both_layouts(tiny_model_dir, tmp_path):
    base = tiny_model_dir("TI2V-5B")
    model = load_wan_model(base, transformer_dtype=torch.float32)
    config = finetune_config(base, tmp_path / "data", tmp_path / "run")
    config.output.save_dtype = "float16"
    single, folder = WanFineTuneSaver().save(model, config, tmp_path / "out" / "model.safetensors")
    expected = {k: v.half() for k, v in model.transformer.state_dict().items()}
    for path in (single, folder / "transformer" / "diffusion_pytorch_model.safetensors"):
        with safe_open(str(path), framework="pt") as file:
            assert {file.get_slice(k).get_dtype() for k in file.keys()} == {"F16"}, path
    from_single = WanTransformer3DModel.from_single_file(
        str(single), config=str(folder), subfolder="transformer", local_files_only=True, torch_dtype=torch.float16
    ).state_dict()
    from_folder = WanTransformer3DModel.from_pretrained(
        folder, subfolder="transformer", torch_dtype=torch.float16
    ).state_dict()
    for loaded in (from_single, from_folder):
        assert set(loaded) == set(expected) and all(torch.equal(loaded[k], expected[k]) for k in expected)
