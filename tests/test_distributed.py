"""Several processes train as one: data parallel LoRA equals one process with the whole batch, A14B processes
agree on the expert of every step, and FSDP full fine-tuning really shards and equals one process.

Every multi-process run here is two real processes on the gloo backend with a rendezvous on 127.0.0.1
(tests/distributed_runs.py), each on one CPU thread; the one-process references run in the test process.

Why "within float32 rounding" and not bit-identical: one process with a batch of two computes the loss's mean
and its gradient as one reduction over both samples; two processes each reduce over their own sample and the
two gradients are then averaged by an all-reduce. The sums run in another order, which changes the last bits
of every gradient (checked: the first step's gradients agree to about 1e-6 of their norm). AdamW then divides
each gradient component by its own magnitude (g / (|g| + eps)): where a component is almost zero, because
large contributions cancelled, the rounding that is 1e-7 of the contributions is a large part of what is
left, and the update of that weight differs by up to a few percent of the learning rate. So the weights are
compared by the distance between the two runs relative to how far training moved them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file

from modules.config.train_config import TrainConfig
from modules.data.sources.demo_data import DemoClip, write_clip
from modules.trainer.generic_trainer import GenericTrainer
from modules.trainer.state.backups import backup_folders, check_backup
from modules.wan.formats.key_map import diffusers_to_original_key
from modules.wan.variants import HIGH, LOW
from tests.config_builders import tiny_run_config
from tests.distributed_runs import run_processes, train_recorded

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def two_bucket_data(tmp_path_factory) -> Path:
    """Two clips of different shapes, each twice: two buckets of two samples, so a step's batch of two is
    always one bucket and no process needs a repeated sample."""
    folder = tmp_path_factory.mktemp("two_buckets")
    write_clip(DemoClip("square", "circle", "red", "blue", 64, 64, 9, 16), folder)
    write_clip(DemoClip("wide", "square", "green", "blue", 128, 32, 9, 16), folder)
    return folder


def make_config(base: Path, data: Path, workspace: Path, method: str, batch_size: int, steps: int) -> TrainConfig:
    config = tiny_run_config(
        base,
        workspace,
        [{"path": data, "repeats": 2}],
        method=method,
        resolution=64,
        cache_dir=workspace.parent / "cache",  # shared by the runs of a test: built once
        max_steps=steps,
        batch_size=batch_size,
        learning_rate=1e-3,
        lr_scheduler="constant",
        warmup_steps=0,
    )
    config.lora.rank, config.lora.alpha, config.lora.dropout = 4, 4.0, 0.0
    config.output.save_every_steps = 0
    return config


def flat(tensors: dict) -> torch.Tensor:
    return torch.cat([tensors[k].double().reshape(-1) for k in sorted(tensors)])


def assert_gradients_agree(left: dict, right: dict) -> None:
    """The same gradients up to float32 summation order: all of them within 1e-5 of their norm, each tensor
    within 1e-3 of its own."""
    assert left.keys() == right.keys() and left
    relative = {
        key: (left[key].double() - right[key].double()).norm().item() / max(left[key].double().norm().item(), 1e-30)
        for key in left
    }
    overall = (flat(left) - flat(right)).norm().item() / flat(left).norm().item()
    print(f"gradients: {overall:.1e} apart overall; largest per tensor {max(relative.values()):.1e}")
    # A tensor whose gradient mostly cancelled keeps more of the rounding (see the module docstring).
    assert overall <= 1e-5 and max(relative.values()) <= 1e-3, relative


def assert_weights_agree(initial: dict, left: dict, right: dict) -> None:
    """The runs end within 1% of the distance training moved the weights (see the module docstring)."""
    assert left.keys() == right.keys() == initial.keys()
    moved = (flat(left) - flat(initial)).norm().item()
    apart = (flat(left) - flat(right)).norm().item()
    assert moved > 0 and apart <= 1e-2 * moved, f"runs {apart:.3e} apart, training moved the weights {moved:.3e}"


def embedding_run(config: TrainConfig) -> TrainConfig:
    """Train an embedding instead: its placeholder in every caption, a short text length for the tiny UMT5."""
    config.model.text_max_length = 32
    for concept in config.data.concepts:
        concept.caption_source, concept.caption_text = "text", "a <concept> moves over a blue background"
    config.embedding.init_text = "red circle"
    return config


@pytest.mark.parametrize("method", ["lora", "embedding"])
def test_two_processes_with_batch_one_equal_one_process_with_batch_two(
    method, tiny_model_dir, two_bucket_data, tmp_path
):
    base = tiny_model_dir("TI2V-5B")
    adjust = embedding_run if method == "embedding" else (lambda config: config)
    one = train_recorded(GenericTrainer(adjust(make_config(base, two_bucket_data, tmp_path / "one", method, 2, 4))))
    two = adjust(make_config(base, two_bucket_data, tmp_path / "two", method, 1, 4))
    ranks = run_processes(two, 2, tmp_path / "rec")

    assert [r["world_size"] for r in ranks] == [2, 2]
    # Both processes hold the same weights after every step (one optimizer step for all).
    assert all(torch.equal(ranks[0]["final"][k], ranks[1]["final"][k]) for k in ranks[0]["final"])
    assert [s["loss"] for s in ranks[0]["steps"]] == [s["loss"] for s in ranks[1]["steps"]]
    assert [s["loss"] for s in ranks[0]["steps"]] == pytest.approx([s["loss"] for s in one["steps"]], rel=1e-5)
    trained = [HIGH] if method == "lora" else ["embedding"]
    assert all(s["changed"] == trained for s in ranks[0]["steps"])  # every step trained
    # The first step: same start, same samples, same noise; the averaged gradient is the batch's gradient.
    assert all(torch.equal(one["initial"][k], ranks[0]["initial"][k]) for k in one["initial"])
    assert_gradients_agree(one["gradients"][0], ranks[0]["gradients"][0])
    assert_weights_agree(one["initial"], one["final"], ranks[0]["final"])
    # Only the main process saved; the file holds its weights.
    assert len(ranks[0]["output_files"]) == 1 and ranks[1]["output_files"] == []
    assert load_file(ranks[0]["output_files"][0]).keys() == load_file(one["output_files"][0]).keys()


def test_a14b_processes_train_the_same_expert_on_every_step(tiny_model_dir, two_bucket_data, tmp_path):
    config = make_config(tiny_model_dir("T2V-A14B"), two_bucket_data, tmp_path / "a14b", "lora", 1, 6)
    config.experts.train, config.experts.switch_every_steps = "both", 1
    config.experts.high_noise_step_ratio = 0.5
    ranks = run_processes(config, 2, tmp_path / "rec")

    steps = [s["step"] for s in ranks[0]["steps"]]
    assert steps == list(range(1, 7)) and [s["step"] for s in ranks[1]["steps"]] == steps
    for mine, theirs in zip(ranks[0]["steps"], ranks[1]["steps"]):
        # Each process changed exactly the expert of the step, the same on both; the other LoRA stayed as it was.
        assert mine["changed"] == [mine["expert"]] and theirs["changed"] == [theirs["expert"]]
        assert mine["expert"] == theirs["expert"]
    assert {s["expert"] for s in ranks[0]["steps"]} == {HIGH, LOW}, "the seed should let both experts train"
    assert all(torch.equal(ranks[0]["final"][k], ranks[1]["final"][k]) for k in ranks[0]["final"])


def test_fsdp_full_finetune_shards_and_equals_one_process(tiny_model_dir, two_bucket_data, tmp_path):
    base = tiny_model_dir("TI2V-5B")
    one = train_recorded(GenericTrainer(make_config(base, two_bucket_data, tmp_path / "one", "full", 2, 3)))
    config = make_config(base, two_bucket_data, tmp_path / "two", "full", 1, 3)
    config.backup.every_steps = 1
    ranks = run_processes(config, 2, tmp_path / "rec")

    # Really sharded: every block weight is a DTensor of which each process holds about half the rows.
    for rank in ranks:
        blocks = {k: v for k, v in rank["layout"].items() if ".blocks." in k}
        assert blocks and all(sharded for _, _, sharded in blocks.values())
        split = [(full, local) for full, local, _ in blocks.values() if full[0] >= 2]
        assert split and all(local[0] == -(-full[0] // 2) or local[0] == full[0] // 2 for full, local in split)
        assert all(local[1:] == full[1:] for full, local in split)
    first = next(iter(ranks[0]["layout"]))
    # Both processes trained; the gradients FSDP averaged (reduce-scatter) equal one process's batch of two.
    assert all(s["changed"] == [HIGH] for s in ranks[0]["steps"])
    assert [s["loss"] for s in ranks[0]["steps"]] == pytest.approx([s["loss"] for s in one["steps"]], rel=1e-5)
    assert_gradients_agree(one["gradients"][0], ranks[0]["gradients"][0])

    # The main process wrote the same files as one process: the single file (original key names) and the
    # diffusers folder, equal within float32 rounding.
    assert ranks[1]["output_files"] == []
    single_one, single_two = (
        next(Path(p) for p in files if p.endswith(".safetensors") and Path(p).is_file())
        for files in (one["output_files"], ranks[0]["output_files"])
    )
    saved_one, saved_two = load_file(single_one), load_file(single_two)
    reference_keys = {
        diffusers_to_original_key(k)
        for k in WanTransformer3DModel.from_pretrained(
            base, subfolder="transformer", local_files_only=True
        ).state_dict()
    }
    assert set(saved_two) == set(saved_one) == reference_keys
    initial = {diffusers_to_original_key(k.split(".", 1)[1]): v for k, v in one["initial"].items()}
    assert_weights_agree(initial, saved_one, saved_two)
    loaded = WanTransformer3DModel.from_single_file(
        str(single_two), config=str(base), subfolder="transformer", local_files_only=True, torch_dtype=torch.float32
    ).state_dict()
    folder_two = WanTransformer3DModel.from_pretrained(
        Path(single_two).with_name(Path(single_two).stem + "-diffusers"), subfolder="transformer", local_files_only=True
    ).state_dict()
    assert loaded.keys() == folder_two.keys() and all(torch.equal(loaded[k], folder_two[k]) for k in loaded)

    # The backups hold whole tensors (gathered from the shards). Resuming from step 2 with two processes
    # continues exactly: each process ends with the same shard as in the uninterrupted run.
    backups = backup_folders(tmp_path / "two" / "backups")
    assert check_backup(backups[0])["global_step"] == 3
    assert load_file(backups[0] / "weights.safetensors")[first].shape == tuple(ranks[0]["layout"][first][0])
    shutil.rmtree(backups[0])
    config.backup.continue_last_backup = True
    resumed = run_processes(config, 2, tmp_path / "rec-resumed")
    assert [s["step"] for s in resumed[0]["steps"]] == [3]
    for before, after in zip(ranks, resumed):
        assert all(torch.equal(before["final"][k], after["final"][k]) for k in before["final"])
