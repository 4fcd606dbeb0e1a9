"""model.base_loras: LoRAs merged into the base before training (a distillation LoRA users sample with).

The merged weights are checked against ComfyUI's merge formula for each type (written out independently in
tests/test_lora_variants.py's `comfyui_delta`) and against peft computing with the adapter attached; a run on the
merged base records the merge, its LoRA sampled on base + both adapters computes what the merged base computes,
a changed list refuses to resume, the cache is untouched, and fp8 storage quantises the merged weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors import safe_open

from modules.base.model_loader import ModelLoadError
from modules.config.loading import load_config
from modules.module.fp8_linear import Fp8Linear, quantise_fp8
from modules.module.lora import attach_lora, lora_state_dict, set_lora_state_dict
from modules.module.lora_merge import merge_adapter
from modules.trainer.generic_trainer import GenericTrainer
from modules.trainer.state.backups import BackupError
from modules.wan.formats.adapter_file import read_adapter_file
from modules.wan.formats.key_map import diffusers_to_original_key
from modules.wan.formats.lora_file import save_lora_file
from modules.wan.formats.lycoris_keys import read_tensors
from modules.wan.loading.loader import WanModelLoader
from modules.wan.sampling.loras import LoraSpec, apply_loras
from tests.test_lora_format import forward, transformer_inputs
from tests.test_lora_variants import comfyui_delta

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ALPHA, MULTIPLIER = 3.0, 0.7
PRESET = Path(__file__).resolve().parents[1] / "training_presets" / "demo_ti2v_5b_lora.json"
TYPES = {"lora": ("lora", 4, False), "dora": ("lora", 4, True), "loha": ("loha", 4, False), "lokr": ("lokr", 3, False)}


def random_lora_file(folder: Path, path: Path, kind: str, rank: int, dora: bool, seed: int = 11, **save) -> Path:
    transformer = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    attach_lora(transformer, rank=rank, alpha=ALPHA, kind=kind, use_dora=dora)
    generator = torch.Generator().manual_seed(seed)
    state = lora_state_dict(transformer)
    set_lora_state_dict(transformer, {k: torch.randn(v.shape, generator=generator) * 0.2 for k, v in state.items()})
    return save_lora_file(lora_state_dict(transformer), path, rank=rank, alpha=ALPHA, kind=kind, **save)


@pytest.fixture(scope="module")
def ti2v(tiny_model_dir) -> Path:
    return tiny_model_dir("TI2V-5B")


def comfyui_merged(base: WanTransformer3DModel, lora_file: Path, multiplier: float) -> dict[str, torch.Tensor]:
    """Weights (diffusers names) after ComfyUI's merge at `multiplier`: W + m * (its delta)."""
    tensors, _ = read_tensors(lora_file)
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        module, part = key.removeprefix("diffusion_model.").removesuffix(".weight").rsplit(".", 1)
        modules.setdefault(module, {})[part] = value.float()
    weights = {k: v.float() for k, v in base.state_dict().items()}
    originals = {diffusers_to_original_key(k.removesuffix(".weight")): k for k in weights if k.endswith(".weight")}
    for module, parts in modules.items():
        alpha = float(parts.pop("alpha").item())
        key = originals[module]
        if set(parts) == {"lora_A", "lora_B"}:  # ComfyUI's plain LoRA: up @ down * alpha / rank
            delta = parts["lora_B"] @ parts["lora_A"] * (alpha / parts["lora_A"].shape[0])
        else:
            delta = comfyui_delta(parts, alpha, weights[key])
        weights[key] = weights[key] + multiplier * delta
    return weights


@pytest.mark.parametrize("name", list(TYPES))
def test_merge_equals_comfyuis_formula_and_peft_with_the_adapter_attached(ti2v, tmp_path, name):
    kind, rank, dora = TYPES[name]
    path = random_lora_file(ti2v, tmp_path / f"{name}.safetensors", kind, rank, dora)
    settings, state_dict, _ = read_adapter_file(path)
    modules = {key.removesuffix(".weight").rsplit(".", 1)[0] for key in state_dict}

    base = WanTransformer3DModel.from_pretrained(ti2v, subfolder="transformer")
    expected = comfyui_merged(base, path, MULTIPLIER)
    merged = merge_adapter(base, state_dict, settings.type, settings.rank, settings.alpha, MULTIPLIER)
    assert len(merged) == len(modules) > 0
    for key, value in base.state_dict().items():
        torch.testing.assert_close(value, expected[key], atol=2e-6, rtol=0, msg=key)

    # At multiplier 1 the merged model computes what peft computes with the adapter attached.
    at_one = WanTransformer3DModel.from_pretrained(ti2v, subfolder="transformer")
    merge_adapter(at_one, state_dict, settings.type, settings.rank, settings.alpha, 1.0)
    attached = WanTransformer3DModel.from_pretrained(ti2v, subfolder="transformer")
    attach_lora(attached, target_modules=sorted(modules), **settings.attach_arguments())
    set_lora_state_dict(attached, state_dict)
    inputs = transformer_inputs(at_one)
    torch.testing.assert_close(forward(at_one.eval(), inputs), forward(attached.eval(), inputs), atol=1e-5, rtol=0)


def base_lora_setting(path: Path, multiplier: float = MULTIPLIER) -> str:
    return "model.base_loras=" + json.dumps([{"path": str(path), "multiplier": multiplier}])


def trainer_for(ti2v: Path, data: Path, cache: Path, workspace: Path, *extra: str) -> GenericTrainer:
    config = load_config(
        PRESET,
        [
            f"model.base_path={ti2v}",
            f"data.concepts.0.path={data}",
            f"output.workspace_dir={workspace}",
            f"data.cache_dir={cache}",
            "data.resolution=32",
            "data.frames=5",
            "training.max_steps=2",
            "sampling.samples=[]",
            "output.tensorboard=false",
            "output.save_every_steps=0",
            "lora.rank=4",
            *extra,
        ],
    )
    return GenericTrainer(config)


def cache_files(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


def test_training_on_a_merged_base_records_it_and_samples_like_both_adapters(ti2v, demo_data_dir, tmp_path):
    base_lora = random_lora_file(ti2v, tmp_path / "distill.safetensors", "lora", 4, False)
    cache = tmp_path / "cache"
    plain = trainer_for(ti2v, demo_data_dir, cache, tmp_path / "plain")
    plain.load_and_cache()
    cached = cache_files(cache)
    assert cached

    trainer = trainer_for(ti2v, demo_data_dir, cache, tmp_path / "merged", base_lora_setting(base_lora))
    result = trainer.train()
    assert cache_files(cache) == cached  # merging changes no latent or caption: nothing re-encoded
    with safe_open(str(result.output_files[0]), framework="pt") as file:
        recorded = json.loads(file.metadata()["wan.base_loras"])
    assert [(r["path"], r["multiplier"], r["type"]) for r in recorded] == [(str(base_lora), MULTIPLIER, "lora")]
    assert len(recorded[0]["sha256"]) == 64

    # The trained LoRA on the merged base == the plain base with the base LoRA (x multiplier) and it attached.
    merged = WanModelLoader().load(trainer.config)
    apply_loras(merged, [LoraSpec(path=str(result.output_files[0]))])
    both = WanModelLoader().load(plain.config)
    apply_loras(both, [LoraSpec(str(base_lora), weight=MULTIPLIER), LoraSpec(path=str(result.output_files[0]))])
    inputs = transformer_inputs(merged.transformer)
    expected = forward(both.transformer.eval(), inputs)
    torch.testing.assert_close(forward(merged.transformer.eval(), inputs), expected, atol=1e-5, rtol=0)
    without = WanModelLoader().load(plain.config)
    apply_loras(without, [LoraSpec(path=str(result.output_files[0]))])
    assert (forward(without.transformer.eval(), inputs) - expected).abs().max() > 1e-3  # the merge matters


def test_a_changed_base_lora_list_refuses_to_resume(ti2v, demo_data_dir, tmp_path):
    base_lora = random_lora_file(ti2v, tmp_path / "distill.safetensors", "lora", 4, False)
    workspace, cache = tmp_path / "ws", tmp_path / "cache"
    backup = ["backup.every_steps=1"]
    trainer_for(ti2v, demo_data_dir, cache, workspace, base_lora_setting(base_lora), *backup).train()
    again = trainer_for(
        ti2v,
        demo_data_dir,
        cache,
        workspace,
        base_lora_setting(base_lora, multiplier=0.5),
        *backup,
        "backup.continue_last_backup=true",
        "training.max_steps=3",
    )
    with pytest.raises(BackupError, match="model.base_loras"):
        again.train()


def test_fp8_storage_quantises_the_merged_weight(ti2v, demo_data_dir, tmp_path):
    base_lora = random_lora_file(ti2v, tmp_path / "distill.safetensors", "lora", 4, False)
    config = trainer_for(ti2v, demo_data_dir, tmp_path / "c", tmp_path / "w", base_lora_setting(base_lora)).config
    config.training.train_dtype = "bfloat16"
    config.model.transformer_dtype = "bfloat16"
    bf16 = WanModelLoader().load(config)  # merged into the bf16 weights
    config.model.transformer_dtype = "float8_e4m3fn"
    fp8 = WanModelLoader().load(config)
    name = "blocks.0.attn1.to_q"
    layer = fp8.transformer.get_submodule(name)
    assert isinstance(layer, Fp8Linear)
    weight, scale = quantise_fp8(bf16.transformer.get_submodule(name).weight.detach().to(torch.bfloat16))
    assert torch.equal(layer.weight.view(torch.uint8), weight.view(torch.uint8)) and torch.equal(
        layer.scale_weight, scale
    )


def test_a_base_lora_for_another_model_is_refused(ti2v, tiny_model_dir, demo_data_dir, tmp_path):
    other = random_lora_file(
        tiny_model_dir("T2V-A14B"), tmp_path / "a14b.safetensors", "lora", 4, False, variant="T2V-A14B"
    )
    config = trainer_for(ti2v, demo_data_dir, tmp_path / "c", tmp_path / "w", base_lora_setting(other)).config
    with pytest.raises(ModelLoadError, match=r"model.base_loras\[0\].*T2V-A14B"):
        WanModelLoader().load(config)
    config.model.base_loras[0].path = str(tmp_path / "missing.safetensors")
    with pytest.raises(ModelLoadError, match=r"model.base_loras\[0\].*missing.safetensors"):
        WanModelLoader().load(config)
