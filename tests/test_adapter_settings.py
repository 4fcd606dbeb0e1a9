"""Every LoRA type and option is recorded in its file (`wan.adapter`) and rebuilt from it: a file trained with
each combination (LoKr with lora.factor=2 among them) samples through scripts/sample.py to exactly what the
in-training model samples, and loads into a fresh model to the trained adapter's output. Files without the
entry (older ones) get the same settings inferred from their tensors; lora.continue_from and
scripts/convert_model.py rebuild from the entry too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors import safe_open
from safetensors.torch import save_file

from modules.config.loading import load_config
from modules.config.sampling_config import SampleConfig
from modules.config.validation import ConfigError
from modules.module.lora import attach_lora, lora_state_dict, set_lora_state_dict
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.formats.adapter_file import read_adapter_file
from modules.wan.formats.adapter_settings import ADAPTER_KEY, AdapterSettings, inferred_lokr_factor
from modules.wan.formats.lora_file import save_lora_file
from modules.wan.formats.lycoris_keys import read_tensors
from modules.wan.loading.loader import load_wan_model
from modules.wan.sampling.loras import LoraSpec, apply_loras
from modules.wan.sampling.sampler import SamplerOptions, WanModelSampler
from tests.test_lora_format import forward, transformer_inputs
from tests.test_sample_script import png_frames

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "training_presets" / "demo_ti2v_5b_lora.json"
pytestmark = pytest.mark.usefixtures("one_torch_thread")
ALPHA = 3.0
# On the tiny model's layers: rank 3 decomposes LoKr's second factor, rank 4 keeps both full (alpha folded into
# the file for ComfyUI); factor 2 gives other factor shapes than the default -1, which a sampler attaching with
# -1 cannot take.
COMBINATIONS = {
    "lora": ["lora.type=lora", "lora.rank=4"],
    "dora": ["lora.type=lora", "lora.use_dora=true", "lora.rank=4"],
    "loha": ["lora.type=loha", "lora.rank=4"],
    "lokr": ["lora.type=lokr", "lora.rank=3"],
    "lokr_full_factors": ["lora.type=lokr", "lora.rank=4"],
    "lokr_factor_2": ["lora.type=lokr", "lora.rank=3", "lora.factor=2"],
    "lokr_factor_4_full": ["lora.type=lokr", "lora.rank=8", "lora.factor=4"],
}
SAMPLE = dict(prompt="a red circle moves", width=32, height=32, frames=5, steps=2, seed=4, flow_shift=1.5)
ATOL = 1e-5


def train_overrides(model: Path, data: Path, cache: Path, workspace: Path, *extra: str) -> list[str]:
    return [
        f"model.base_path={model}",
        f"data.concepts.0.path={data}",
        f"output.workspace_dir={workspace}",
        f"data.cache_dir={cache}",
        "data.resolution=32",
        "data.frames=5",
        "training.max_steps=3",
        "training.warmup_steps=0",
        "training.lr_scheduler=constant",
        "training.learning_rate=0.01",
        f"lora.alpha={ALPHA}",
        "sampling.samples=[]",
        "output.tensorboard=false",
        "output.save_every_steps=0",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tiny_model_dir, demo_data_dir, tmp_path_factory):
    """combination -> (trainer after training, its saved file)."""
    cache = tmp_path_factory.mktemp("adapter_settings_cache")
    done = {}
    for name, settings in COMBINATIONS.items():
        workspace = tmp_path_factory.mktemp(f"adapter_{name}")
        model = tiny_model_dir("TI2V-5B")
        trainer = GenericTrainer(
            load_config(PRESET, train_overrides(model, demo_data_dir, cache, workspace, *settings))
        )
        trainer.load_and_cache()
        trainer.set_up_training()
        result = trainer.train()
        done[name] = (trainer, result.output_files[0])
    return done


def sample_script_main():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import sample
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return sample.main


def without_adapter_entry(path: Path, destination: Path) -> Path:
    """The file as written before `wan.adapter` existed: same tensors, the entry removed."""
    tensors, metadata = read_tensors(path)
    metadata.pop(ADAPTER_KEY)
    save_file(tensors, str(destination), metadata)
    return destination


@pytest.mark.slow
def test_each_combination_is_recorded_and_samples_through_the_script_as_trained(
    trained, tiny_model_dir, tmp_path, capsys
):
    folder = tiny_model_dir("TI2V-5B")
    main = sample_script_main()
    base_frames = None
    for name, (trainer, path) in trained.items():
        lora = trainer.config.lora
        with safe_open(str(path), framework="pt") as file:
            recorded = json.loads(file.metadata()[ADAPTER_KEY])
        assert recorded == {
            "format": 1,
            "type": lora.type,
            "rank": lora.rank,
            "alpha": ALPHA,
            "use_dora": lora.use_dora,
            "factor": lora.factor,
            "decompose_both": False,
        }, name

        # scripts/sample.py with the file = the sampler on the in-training model (its adapter attached as trained).
        out = tmp_path / name
        argv = ["--model", str(folder), "--lora", str(path), "--out", str(out / "script"), "--format", "png"]
        argv += ["--dtype", "float32", "--device", "cpu", "--text-max-length", "64", "--prompt", SAMPLE["prompt"]]
        for key in ("width", "height", "frames", "steps", "seed"):
            argv += [f"--{key}", str(SAMPLE[key])]
        assert main([*argv, "--flow-shift", str(SAMPLE["flow_shift"])]) == 0, capsys.readouterr().err
        script = png_frames(out / "script" / "sample-000-seed4")
        sampler = WanModelSampler(SamplerOptions(format="png"))
        trainer.model.text_max_length = 64
        in_training = png_frames(sampler.sample(trainer.model, SampleConfig(**SAMPLE), out / "trained"))
        assert np.array_equal(script, in_training), f"{name}: the script's video is not the trained adapter's"
        if base_frames is None:
            base = load_wan_model(folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
            base.text_max_length = 64
            base_frames = png_frames(sampler.sample(base, SampleConfig(**SAMPLE), tmp_path / "base"))
        assert not np.array_equal(script, base_frames), f"{name}: the adapter changed nothing visible"


@pytest.mark.slow
@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "inferred_from_an_older_file"])
def test_files_rebuild_the_trained_adapter_exactly(trained, tiny_model_dir, tmp_path, recorded):
    folder = tiny_model_dir("TI2V-5B")
    for name, (trainer, path) in trained.items():
        if not recorded:
            path = without_adapter_entry(path, tmp_path / f"{name}_old.safetensors")
        settings, _, _ = read_adapter_file(path)
        lora = trainer.config.lora
        assert settings == AdapterSettings(lora.type, lora.rank, ALPHA, lora.use_dora, lora.factor, False, recorded)
        fresh = load_wan_model(folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
        apply_loras(fresh, [LoraSpec(path=str(path))])
        expected = trainer.model.transformer.eval()
        inputs = transformer_inputs(expected)
        torch.testing.assert_close(
            forward(fresh.transformer.eval(), inputs), forward(expected, inputs), atol=ATOL, rtol=0
        )


@pytest.mark.parametrize("factor", [-1, 1, 2, 4, 8])
@pytest.mark.parametrize("decompose_both", [False, True])
def test_lokr_factor_is_inferred_as_peft_shapes_it(tiny_model_dir, factor, decompose_both):
    expert = WanTransformer3DModel.from_pretrained(tiny_model_dir("TI2V-5B"), subfolder="transformer")
    attach_lora(expert, rank=1, alpha=1.0, kind="lokr", factor=factor, decompose_both=decompose_both)
    state = lora_state_dict(expert)
    inferred = inferred_lokr_factor(state)
    again = WanTransformer3DModel.from_pretrained(tiny_model_dir("TI2V-5B"), subfolder="transformer")
    attach_lora(again, rank=1, alpha=1.0, kind="lokr", factor=inferred, decompose_both=decompose_both)
    assert {k: v.shape for k, v in lora_state_dict(again).items()} == {k: v.shape for k, v in state.items()}


def test_continue_from_rebuilds_the_recorded_lokr_and_names_a_mismatch(tiny_model_dir, demo_data_dir, tmp_path_factory):
    model = tiny_model_dir("TI2V-5B")
    cache = tmp_path_factory.mktemp("continue_cache")
    settings = ["lora.type=lokr", "lora.rank=3", "lora.factor=2"]
    first = GenericTrainer(
        load_config(PRESET, train_overrides(model, demo_data_dir, cache, tmp_path_factory.mktemp("a"), *settings))
    )
    first.load_and_cache()
    first.set_up_training()
    generator = torch.Generator().manual_seed(1)
    start = {
        k: torch.randn(v.shape, generator=generator) * 0.1 for k, v in lora_state_dict(first.model.transformer).items()
    }
    set_lora_state_dict(first.model.transformer, start)
    path = save_lora_file(
        start,
        tmp_path_factory.mktemp("file") / "k.safetensors",
        rank=3,
        alpha=ALPHA,
        kind="lokr",
        factor=2,
        variant="TI2V-5B",
    )
    overrides = [*settings, f"lora.continue_from={path}"]
    again = GenericTrainer(
        load_config(PRESET, train_overrides(model, demo_data_dir, cache, tmp_path_factory.mktemp("b"), *overrides))
    )
    again.load_and_cache()
    again.set_up_training()
    loaded = lora_state_dict(again.model.transformer)
    assert loaded.keys() == start.keys() and all(torch.equal(loaded[k], start[k]) for k in start)

    wrong = [*overrides, "lora.factor=-1"]
    other = GenericTrainer(
        load_config(PRESET, train_overrides(model, demo_data_dir, cache, tmp_path_factory.mktemp("c"), *wrong))
    )
    other.load_and_cache()
    with pytest.raises(ConfigError, match=r"lora\.factor=2"):
        other.set_up_training()


def test_convert_keeps_the_recorded_settings(tiny_model_dir, tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import convert_model
    finally:
        sys.path.remove(str(REPO / "scripts"))
    expert = WanTransformer3DModel.from_pretrained(tiny_model_dir("TI2V-5B"), subfolder="transformer")
    attach_lora(expert, rank=3, alpha=ALPHA, kind="lokr", factor=2)
    generator = torch.Generator().manual_seed(2)
    state = {k: torch.randn(v.shape, generator=generator) for k, v in lora_state_dict(expert).items()}
    source = save_lora_file(state, tmp_path / "k.safetensors", rank=3, alpha=ALPHA, kind="lokr", factor=2)
    converted = convert_model.convert_lora(source, tmp_path / "k16.safetensors", "comfyui", dtype="bfloat16")
    settings, loaded, _ = read_adapter_file(converted)
    assert settings == AdapterSettings("lokr", 3, ALPHA, factor=2)
    assert all(torch.equal(loaded[k], state[k].bfloat16().float()) for k in state)
    assert convert_model.main(["lora", str(source), str(tmp_path / "d.safetensors"), "--format", "diffusers"]) == 2
