"""The host-memory plan (modules/memory/host.py): its terms against the numbers they stand for, the verdicts and
least change, `--plan` and diagnostics.json showing it, and a run refused before loading when RAM is too small."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from modules.config.loading import load_config
from modules.memory.host import (
    RAM_ENV,
    HostMemoryError,
    build_host_plan,
    host_memory_summary,
    machine_ram_gib,
    maps_weights,
    pinned_block_bytes,
)
from modules.memory.phases import GIB, block_bytes, expert_bytes
from modules.registry import memory_facts_for
from modules.trainer.generic_trainer import GenericTrainer
from tests.test_training import lora_config, one_clip

REPO = Path(__file__).resolve().parent.parent
A14B_24GB = REPO / "training_presets" / "wan22_t2v_a14b_lora_24gb.json"
TI2V_24GB = REPO / "training_presets" / "wan22_ti2v_5b_lora_24gb.json"
MIB = 2**20


def plan_of(path: Path, processes: int = 1, **changes):
    config = load_config(path, [f"{k}={v}" for k, v in changes.items()])
    return build_host_plan(config, memory_facts_for(config), processes), config


def test_a14b_terms_are_the_numbers_they_stand_for():
    plan, config = plan_of(A14B_24GB, **{"data.resolution": 632, "data.frames": 81})
    expert = memory_facts_for(config).experts[0]
    # A block: 8 attention matrices 5120 x 5120 (26.2 MB in fp8 -> 32 MiB pinned) and 2 FFN matrices 5120 x 13824
    # (70.8 MB -> 128 MiB): the caching host allocator's power-of-two rounding, block by block.
    assert expert.block_linear_params == 8 * 5120 * 5120 + 2 * 5120 * 13824 and expert.block_linears == 10
    rest = block_bytes(expert, "float8_e4m3fn") - expert.block_linear_params
    assert pinned_block_bytes(expert, "float8_e4m3fn") - 1.5 * rest == 8 * 32 * MIB + 2 * 128 * MIB
    unrounded = 2 * 24 * block_bytes(expert, "float8_e4m3fn")
    per_tensor = 2 * 24 * pinned_block_bytes(expert, "float8_e4m3fn")
    assert 15.5 * GIB < unrounded < 16 * GIB and 1.45 < per_tensor / unrounded < 1.6  # the 15.7 -> ~24 GiB
    # Now: swapped blocks in pageable memory, copies through one staging buffer of 2 blocks at its exact size.
    training = plan.phase("training")
    assert training.pinned["swap staging (2 blocks)"] == 2 * block_bytes(expert, "float8_e4m3fn")  # 2 x 337 MB
    assert training.anonymous["swapped blocks (24 x 2 experts)"] == unrounded
    # Offloaded block inputs: 40 blocks x tokens x 5120 x 2 bytes; 632^2 ~ 832 x 480, 21 latent frames. Each is
    # parked in a slot of its exact size on a GPU (host_slots.py), page-locked, not rounded up to 512 MiB.
    tokens = memory_facts_for(config).tokens_for_area(632, 81)
    assert 300 * MIB < tokens * 5120 * 2 < 340 * MIB
    assert training.pinned["offloaded block inputs (40 blocks)"] == 40 * tokens * 5120 * 2
    cpu_plan, _ = plan_of(A14B_24GB, **{"data.resolution": 632, "data.frames": 81, "training.device": "cpu"})
    on_cpu = cpu_plan.phase("training")
    assert on_cpu.anonymous["offloaded block inputs (40 blocks)"] == 40 * tokens * 5120 * 2 and not on_cpu.pinned


def test_mapped_weights_are_counted_once_per_machine_and_the_inactive_expert_is_reclaimable():
    config = load_config(A14B_24GB, ["data.resolution=632", "data.frames=81"])
    facts = dataclasses.replace(memory_facts_for(config), source_dtype="float8_e4m3fn")  # an fp8_scaled file
    expert = facts.experts[0]
    copied, mapped = build_host_plan(config, memory_facts_for(config), 1), build_host_plan(config, facts, 1)
    assert memory_facts_for(config).source_dtype is None  # a hub id: nothing to read, so copies are assumed
    training = mapped.phase("training")
    assert training.file_backed == {
        "swapped blocks (24 x 1 experts on the GPU, mapped)": 24 * block_bytes(expert, "float8_e4m3fn")
    }
    assert training.reclaimable == {"experts not on the GPU (1, mapped)": expert_bytes(expert, "float8_e4m3fn")}
    assert not [k for k in training.anonymous if "swapped" in k or "experts" in k]
    assert training.pinned == copied.phase("training").pinned  # the staging and the activations, as before
    own = sum(training.anonymous.values()) + sum(training.pinned.values())
    two = build_host_plan(config, facts, 2)
    assert two.phase("training").machine(2) == pytest.approx(2 * own + sum(training.file_backed.values()))
    entry = two.to_dict()["phases"][2]
    assert entry["name"] == "training" and entry["reclaimable"] and entry["file_backed"]
    off = build_host_plan(load_config(A14B_24GB, ["memory.map_weights=false"]), facts, 1).phase("training")
    assert not off.file_backed and not off.reclaimable


def test_the_source_dtype_comes_from_the_files_headers(tiny_model_dir, tmp_path):
    base = tiny_model_dir("TI2V-5B")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run")
    stored = next(iter(safe_open_dtypes(base / "transformer")))
    assert memory_facts_for(config).source_dtype == stored
    config.model.transformer_dtype = stored
    assert maps_weights(config, memory_facts_for(config))
    config.memory.map_weights = False
    assert not maps_weights(config, memory_facts_for(config))


def test_umt5_counts_its_tied_table_once_and_stays_mapped_where_its_folder_stores_its_dtype(tiny_model_dir, tmp_path):
    from transformers import UMT5EncoderModel

    base = tiny_model_dir("TI2V-5B")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run")
    facts = memory_facts_for(config)
    real = UMT5EncoderModel.from_pretrained(base / "text_encoder")  # as loaded: shared and embed_tokens are one
    assert facts.text_encoder.params == sum(p.numel() for p in real.parameters())
    assert facts.text_encoder.embedding_params == real.config.vocab_size * real.config.d_model
    stored = {str(t.dtype) for t in real.parameters()}  # the folder's dtype, as from_pretrained read it unconverted
    with safe_open(next((base / "text_encoder").glob("*.safetensors")), "pt") as f:
        file_dtype = str(f.get_tensor(next(k for k in f.keys() if ".layer." in k and k.endswith(".weight"))).dtype)
    assert (
        facts.text_encoder_source_dtype == file_dtype.removeprefix("torch.")
        and f"torch.{facts.text_encoder_source_dtype}" in stored
    )

    def caching(dtype: str):
        config.model.text_encoder_dtype = dtype
        return next(p for p in build_host_plan(config, memory_facts_for(config)).phases if p.name.startswith("caching"))

    bytes_per = {"float32": 4, "bfloat16": 2}
    mapped = caching(facts.text_encoder_source_dtype)
    table = facts.text_encoder.embedding_params * bytes_per[facts.text_encoder_source_dtype]
    assert mapped.reclaimable == {"UMT5's token table (mapped, read at the captions' tokens)": table}
    assert not any("UMT5" in k for k in mapped.anonymous)
    other = "bfloat16" if facts.text_encoder_source_dtype == "float32" else "float32"
    copied = caching(other)  # a conversion: the process's own copy, table included
    assert copied.anonymous["UMT5 (read for missing captions)"] == facts.text_encoder.params * bytes_per[other]
    assert not copied.reclaimable and not copied.file_backed


def safe_open_dtypes(folder: Path) -> set[str]:
    """The dtypes of a folder's 2-D block weights, by safetensors' own reader."""
    names = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
    found = set()
    for file in folder.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            for key in f.keys():
                if (
                    key.startswith("blocks.")
                    and key.endswith(".weight")
                    and f.get_slice(key).get_shape().__len__() == 2
                ):
                    found.add(names[f.get_tensor(key).dtype])
    return found


def test_processes_multiply_own_memory_and_the_verdicts_name_the_least_change():
    one, _ = plan_of(TI2V_24GB)
    two, _ = plan_of(TI2V_24GB, processes=2)
    for a, b in zip(one.phases, two.phases):  # caching runs in the main process alone
        assert b.machine(2) == pytest.approx((1 if a.one_process else 2) * a.per_process())
    # A run caches first, with UMT5 and the VAE alone, and only then loads the transformer: the peak is the larger
    # phase, not their sum, and the phases are planned in the order the run goes through them.
    names = [p.name for p in one.phases]
    assert names[:3] == ["caching (first, no transformer yet)", "loading the experts", "training"]
    caching, loading = one.phase(names[0]), one.phase("loading the experts")
    assert not any(k.startswith("experts") for k in caching.anonymous) and one.peak_bytes() == max(
        p.machine(1) for p in one.phases
    )
    assert one.peak_phase() == names[0] and one.fits(32) and not one.fits(16)
    assert any(k.startswith("experts") for k in loading.anonymous) and not any("UMT5" in k for k in loading.anonymous)
    fp8_two, _ = plan_of(TI2V_24GB, processes=2, **{"model.transformer_dtype": "float8_e4m3fn"})
    assert not two.fits(24) and fp8_two.fits(24)
    assert two.least_change(24) == f"model.transformer_dtype=float8_e4m3fn ({fp8_two.peak_gib():.1f} GiB peak)"
    # Embedding training keeps UMT5, so its run caches beside the transformer; building the cache first is the fix.
    embedding, _ = plan_of(TI2V_24GB, training_method="embedding")
    assert [p.name for p in embedding.phases][:2] == [
        "loading the experts",
        "caching (in the run, beside the experts: embeddings)",
    ]
    assert embedding.peak_phase().startswith("caching (in the run") and not embedding.fits(24)
    assert embedding.least_change(24).startswith("build the cache first: scripts/cache.py")
    a14b_two, _ = plan_of(A14B_24GB, processes=2)  # already fp8: fewer processes is what is left
    a14b_one, _ = plan_of(A14B_24GB)
    assert not a14b_two.fits(64) and a14b_one.fits(64)
    assert a14b_two.least_change(64) == f"--num-processes 1 ({a14b_one.peak_gib():.1f} GiB peak)"
    summary = host_memory_summary(embedding.config, embedding.facts, 1, ram_gib=24)
    assert summary.fits is False and summary.least_change and set(summary.verdicts) == {32, 64, 128}
    assert summary.peak_gib == pytest.approx(embedding.peak_gib(), abs=0.01)


def test_ram_size_comes_from_the_environment_when_set(monkeypatch):
    monkeypatch.setenv(RAM_ENV, "48")
    assert machine_ram_gib() == 48
    monkeypatch.setenv(RAM_ENV, "lots")
    with pytest.raises(HostMemoryError, match=RAM_ENV):
        machine_ram_gib()
    monkeypatch.delenv(RAM_ENV)
    assert machine_ram_gib() > 0.5  # /proc/meminfo


@pytest.mark.slow
def test_plan_prints_the_host_plan_beside_the_gpu_plan():
    printed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--config-path", str(A14B_24GB), "--plan", "--vram", "24"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, RAM_ENV: "64"},
    )
    assert printed.returncode == 0, printed.stderr
    assert "verdict: fits a 24 GB card" in printed.stdout
    assert "host memory (RAM) of T2V-A14B" in printed.stdout and "pinned" in printed.stdout
    assert "64 GB RAM (this machine): fits 64 GB of RAM" in printed.stdout


def test_a_run_that_does_not_fit_the_ram_is_refused_before_loading(tiny_model_dir, tmp_path, monkeypatch):
    config = lora_config(tiny_model_dir("TI2V-5B"), one_clip(tmp_path / "data"), tmp_path / "run")
    monkeypatch.setenv(RAM_ENV, "0.5")  # below the process itself: nothing fits
    trainer = GenericTrainer(config)
    with pytest.raises(HostMemoryError) as refused:
        trainer.train()
    message = str(refused.value)
    assert "0.5 GiB" in message and "--plan" in message and RAM_ENV in message
    assert trainer.model is None  # refused before any weight was read
    report = json.loads((tmp_path / "run" / "diagnostics.json").read_text())
    host = report["host_memory_plan"]
    assert host["ram_gib"] == 0.5 and "does not fit" in host["verdict"]
    assert {p["name"] for p in host["phases"]} >= {"loading the experts", "training"}


def test_int8_nf4_loading_is_planned_streamed_unless_base_loras_are_merged_first():
    for kind in ("int8", "nf4"):
        plan, config = plan_of(A14B_24GB, **{"model.transformer_dtype": kind, "memory.blocks_to_swap": 0})
        expert = memory_facts_for(config).experts[0]
        loading = plan.phase("loading the experts").anonymous
        assert loading[f"experts, {kind} (2)"] == 2 * expert_bytes(expert, kind)
        # One linear beyond the stored experts: read in bf16, bitsandbytes' temporaries, the quantised copy. nf4's
        # CPU quantiser measured 16.3 bytes per weight of A14B's FFN matrix, 1.07 GiB (docs/benchmarks.md).
        transient = loading["load transient (largest tensor, read + cast)"]
        assert transient < 0.6 * GIB if kind == "int8" else 1.0 * GIB < transient < 1.2 * GIB
        merged, _ = plan_of(
            A14B_24GB,
            **{
                "model.transformer_dtype": kind,
                "memory.blocks_to_swap": 0,
                "model.base_loras": '[{"path": "x.safetensors"}]',
            },
        )
        read = merged.phase("loading the experts").anonymous["experts read as bfloat16 to merge base LoRAs (2)"]
        assert read == 2 * expert_bytes(expert, "bfloat16") > 53 * GIB
