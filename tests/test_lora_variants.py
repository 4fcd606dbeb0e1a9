"""DoRA (lora.use_dora), LoHa and LoKr (lora.type) on the tiny T2V-A14B through GenericTrainer with both experts:
each adapter changes only on its expert's steps; every key of the saved files names a module of ComfyUI's
(original-named) model; our sampler, loading the files into a fresh model, computes what the trained adapters
computed; and so does the base model with the files merged by ComfyUI's formulas, written out here independently
of peft. The options really change something: their outputs differ from a plain LoRA trained the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors import safe_open

from modules.module.lora import attach_lora, lora_state_dict, set_lora_state_dict
from modules.wan.formats.key_map import diffusers_to_original_state_dict, original_to_diffusers_state_dict
from modules.wan.formats.lora_file import save_lora_file
from modules.wan.formats.lycoris_keys import VARIANT_TENSORS, from_comfyui_variant_state_dict, read_tensors
from modules.wan.loading.loader import load_wan_model
from modules.wan.sampling.loras import LoraSpec, apply_loras
from modules.wan.training import experts
from tests.test_both_experts import STEPS, changed, make_trainer, record_steps
from tests.test_lora_format import forward, transformer_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ALPHA = 3.0
# rank 3 decomposes LoKr's second factor on the tiny layers (ComfyUI's alpha / r rule); rank 4 keeps both factors
# full (ComfyUI's scale 1, so the saver folds alpha / rank in): test_lokr_with_full_factors covers that case.
RUNS = {
    "lora": ["lora.type=lora", "lora.rank=4"],
    "dora": ["lora.type=lora", "lora.use_dora=true", "lora.rank=4"],
    "loha": ["lora.type=loha", "lora.rank=4"],
    "lokr": ["lora.type=lokr", "lora.rank=3"],
}
VARIANTS = ["dora", "loha", "lokr"]
# The tensors each variant's adapter holds (peft's names, which the file keeps).
PARTS = {"dora": {"lora_A", "lora_B", "dora_scale"}, **{k: set(v) for k, v in VARIANT_TENSORS.items()}}
ATOL = 1e-5  # fp32 throughout; the merged and the sampler's forward differ from training's only by rounding


@pytest.fixture(scope="module")
def runs(tiny_model_dir, demo_data_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("variants_cache")
    done = {}
    for kind, settings in RUNS.items():
        workspace = tmp_path_factory.mktemp(f"variant_{kind}")
        trainer = make_trainer(
            tiny_model_dir("T2V-A14B"),
            demo_data_dir,
            cache,
            workspace,
            *settings,
            f"lora.alpha={ALPHA}",
            "training.learning_rate=0.01",
        )
        snapshots, used = record_steps(trainer)
        result = trainer.train()
        done[kind] = (trainer, result, snapshots, used)
    return done


@pytest.mark.parametrize("kind", VARIANTS)
def test_each_adapter_changes_only_on_its_experts_steps(runs, kind):
    trainer, result, snapshots, used = runs[kind]
    assert result.steps == STEPS and len(used) == STEPS
    assert {expert for expert, _ in used} == {experts.HIGH, experts.LOW}
    parts = {key.removesuffix(".weight").rsplit(".", 1)[1] for key in snapshots[0][experts.HIGH]}
    assert parts <= PARTS[kind] and parts, parts  # really a DoRA / LoHa / LoKr adapter
    if kind == "dora":
        assert parts == PARTS["dora"]
    for step, (expert, _) in enumerate(used):
        other = experts.LOW if expert == experts.HIGH else experts.HIGH
        before, after = snapshots[step], snapshots[step + 1]
        assert changed(before[expert], after[expert]), f"step {step + 1}: the active {expert} adapter did not change"
        assert not changed(before[other], after[other]), f"step {step + 1}: the inactive {other} adapter changed"


def comfyui_delta(parts: dict[str, torch.Tensor], alpha: float | None, base: torch.Tensor) -> torch.Tensor:
    """The weight update ComfyUI makes for one module (its LoRA + DoRA / LoHa / LoKr formulas, strength 1)."""
    if "dora_scale" in parts:
        scale = alpha / parts["lora_A"].shape[0]
        weight = base + parts["lora_B"] @ parts["lora_A"] * scale
        # ComfyUI's weight_decompose: each column rescaled to dora_scale (its norm over the output dimension).
        column_norms = weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1, keepdim=True).transpose(0, 1)
        return weight * (parts["dora_scale"] / column_norms) - base
    if "hada_w1_a" in parts:
        rank = parts["hada_w1_b"].shape[0]
        scale = alpha / rank if alpha is not None else 1.0
        return (parts["hada_w1_a"] @ parts["hada_w1_b"]) * (parts["hada_w2_a"] @ parts["hada_w2_b"]) * scale
    w1 = parts["lokr_w1"] if "lokr_w1" in parts else parts["lokr_w1_a"] @ parts["lokr_w1_b"]
    w2 = parts["lokr_w2"] if "lokr_w2" in parts else parts["lokr_w2_a"] @ parts["lokr_w2_b"]
    dim = None
    if "lokr_w1" not in parts:
        dim = parts["lokr_w1_b"].shape[0]
    if "lokr_w2" not in parts:
        dim = parts["lokr_w2_b"].shape[0]
    scale = alpha / dim if alpha is not None and dim is not None else 1.0
    return torch.kron(w1, w2).reshape(base.shape) * scale


def merged_by_comfyui_rule(folder: Path, subfolder: str, lora_file: Path) -> WanTransformer3DModel:
    """The base expert with every module of the file merged into its weight, matched by ComfyUI's key rule:
    strip `diffusion_model.`, the module is the key without its last component, `<module>.weight` must exist."""
    base = WanTransformer3DModel.from_pretrained(folder, subfolder=subfolder)
    weights = diffusers_to_original_state_dict(base.state_dict())
    tensors, _ = read_tensors(lora_file)
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        assert key.startswith("diffusion_model."), key
        name = key.removeprefix("diffusion_model.").removesuffix(".weight")  # lora_A.weight -> lora_A
        module, part = name.rsplit(".", 1)
        assert f"{module}.weight" in weights, f"{key}: no module {module} in ComfyUI's model"
        modules.setdefault(module, {})[part] = value.float()
    for module, parts in modules.items():
        alpha = parts.pop("alpha", None)
        weight = weights[f"{module}.weight"]
        weights[f"{module}.weight"] = weight + comfyui_delta(parts, None if alpha is None else alpha.item(), weight)
    base.load_state_dict(original_to_diffusers_state_dict(weights))
    return base.eval()


@pytest.mark.parametrize("kind", VARIANTS)
def test_files_load_in_our_sampler_and_by_comfyuis_rule_to_what_training_computed(runs, kind, tiny_model_dir):
    trainer, result, _, _ = runs[kind]
    folder = tiny_model_dir("T2V-A14B")
    files = {experts.HIGH: result.output_files[0], experts.LOW: result.output_files[1]}
    assert [p.stem.rsplit("_", 2)[-2:] for p in files.values()] == [["high", "noise"], ["low", "noise"]]
    for path in files.values():
        with safe_open(str(path), framework="pt") as file:
            keys = list(file.keys())
            assert file.metadata().get("wan.lora_type", "lora") == ("lora" if kind == "dora" else kind)
        parts = {k.removesuffix(".weight").rsplit(".", 1)[1] for k in keys} - {"alpha"}
        assert parts <= PARTS[kind] and (parts == PARTS[kind] or kind == "lokr"), parts
        modules = {k.removesuffix(".weight").rsplit(".", 1)[0] for k in keys}
        assert {f"{m}.alpha" for m in modules} <= set(keys)  # every module carries its alpha

    fresh = load_wan_model(folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
    stem = files[experts.HIGH].with_name(files[experts.HIGH].name.replace("_high_noise", ""))
    apply_loras(fresh, [LoraSpec(path=str(stem))])
    for expert_name, path in files.items():
        trained = getattr(trainer.model, expert_name).eval()
        inputs = transformer_inputs(trained)
        expected = forward(trained, inputs)
        ours = forward(getattr(fresh, expert_name).eval(), inputs)
        torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)
        merged = forward(merged_by_comfyui_rule(folder, expert_name, path), inputs)
        torch.testing.assert_close(merged, expected, atol=ATOL, rtol=0)
        base = forward(WanTransformer3DModel.from_pretrained(folder, subfolder=expert_name).eval(), inputs)
        assert (expected - base).abs().max() > 1e-3  # the adapter does change the output


@pytest.mark.parametrize("kind", VARIANTS)
def test_the_type_really_changes_the_result(runs, kind):
    plain = runs["lora"][0].model.transformer.eval()
    other = runs[kind][0].model.transformer.eval()
    inputs = transformer_inputs(plain)
    assert (forward(plain, inputs) - forward(other, inputs)).abs().max() > 1e-3


def test_lokr_with_full_factors_folds_alpha_for_comfyui_and_back(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("TI2V-5B")
    ours = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    attach_lora(ours, rank=4, alpha=ALPHA, kind="lokr")
    state = lora_state_dict(ours)
    assert not any(k.endswith(("_a", "_b")) for k in state)  # rank 4: both factors full on the tiny layers
    generator = torch.Generator().manual_seed(3)
    set_lora_state_dict(ours, {k: torch.randn(v.shape, generator=generator) * 0.2 for k, v in state.items()})
    path = save_lora_file(lora_state_dict(ours), tmp_path / "k.safetensors", rank=4, alpha=ALPHA, kind="lokr")
    inputs = transformer_inputs(ours)
    expected = forward(ours.eval(), inputs)
    torch.testing.assert_close(
        forward(merged_by_comfyui_rule(folder, "transformer", path), inputs), expected, atol=ATOL, rtol=0
    )

    tensors, _ = read_tensors(path)
    kind, loaded = from_comfyui_variant_state_dict(tensors, rank=4, alpha=ALPHA)
    again = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    attach_lora(again, rank=4, alpha=ALPHA, kind=kind, target_modules=sorted({k.rsplit(".", 1)[0] for k in loaded}))
    set_lora_state_dict(again, loaded)
    torch.testing.assert_close(forward(again.eval(), inputs), expected, atol=ATOL, rtol=0)


def test_dora_on_fp8_storage_uses_the_dequantised_weight(tiny_model_dir):
    from modules.module.fp8_linear import convert_to_fp8_storage, dequantise

    folder = tiny_model_dir("TI2V-5B")
    stored = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer").eval()
    names = convert_to_fp8_storage(stored)
    # The same model in float32 with exactly the weights the fp8 layers compute with.
    dense = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer").eval()
    modules = dict(stored.named_modules())
    with torch.no_grad():
        for name in names:
            layer = modules[name]
            dense.get_submodule(name).weight.copy_(dequantise(layer.weight, layer.scale_weight, torch.float32))
    inputs = transformer_inputs(stored)
    before = forward(stored, inputs)
    for transformer in (stored, dense):
        attach_lora(transformer, rank=4, alpha=ALPHA, use_dora=True)
    assert torch.equal(forward(stored.eval(), inputs), before)  # a fresh adapter changes nothing
    generator = torch.Generator().manual_seed(5)
    state = {k: torch.rand(v.shape, generator=generator) + 0.5 for k, v in lora_state_dict(dense).items()}
    for transformer in (stored, dense):
        set_lora_state_dict(transformer, state)
    torch.testing.assert_close(forward(stored.eval(), inputs), forward(dense.eval(), inputs), atol=ATOL, rtol=1e-5)
