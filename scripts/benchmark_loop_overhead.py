"""Loop overhead: the trainer's steady-state step time / a bare forward + backward + optimizer step.

Both run in this one process on the same model (TI2V-5B structure, 4 layers, dim 256), the same LoRA,
batch shape and optimizer. Prints the ratio; the goal is 1.05 or less. Results go in docs/benchmarks.md.

    python scripts/benchmark_loop_overhead.py [--steps 30] [--device auto]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _repo_path  # noqa: F401
import torch

from modules.config.loading import config_from_dict
from modules.data.sources.demo_data import make_demo_data
from modules.module.flow_matching import noisy_input, velocity_target
from modules.trainer.generic_trainer import GenericTrainer
from modules.util.errors import run_script
from modules.wan.tiny_models import write_tiny_model

TRANSFORMER = dict(num_layers=4, heads=4, head_dim=64)


def make_config(root: Path, steps: int, device: str) -> dict:
    return {
        "model": {"base_path": str(root / "model"), "transformer_dtype": "float32", "text_encoder_dtype": "float32"},
        "lora": {"rank": 16, "alpha": 16.0},
        # 256 px and 17 frames: 5 x 8 x 8 = 320 video tokens per clip, plus 512 text tokens.
        "data": {"concepts": [{"path": str(root / "data")}], "resolution": 256, "frames": 17, "min_frames": 17},
        "training": {
            "max_steps": steps,
            "learning_rate": 1e-4,
            "train_dtype": "float32",
            "gradient_checkpointing": False,
            "device": device,
            "max_grad_norm": 1.0,
        },
        "output": {"workspace_dir": str(root / "run"), "tensorboard": True},
        "sampling": {"samples": []},
    }


def same_batches(trainer: GenericTrainer, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches the trainer sees, in its order (buckets differ in size), preloaded on the device."""
    batches, epoch = [], 0
    while len(batches) < steps:
        batches += [
            (b["latents"].to(trainer.device), b["text_embeds"].to(trainer.device)) for b in trainer.data.batches(epoch)
        ]
        epoch += 1
    return batches[:steps]


class BareStep:
    """Forward + backward + optimizer step of the trainer's transformer with nothing around it."""

    def __init__(self, trainer: GenericTrainer):
        self.device = trainer.device
        self.transformer = trainer.model.transformer
        self.params = [p for p in self.transformer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4, foreach=True)

    def __call__(self, latents: torch.Tensor, text: torch.Tensor) -> float:
        """Seconds for one step on this batch."""
        _, _, frames, height, width = latents.shape
        tokens = frames * (height // 2) * (width // 2)
        start = time.perf_counter()
        sigma = torch.rand(latents.shape[0], device=self.device)
        noise = torch.randn_like(latents)
        predicted = self.transformer(
            hidden_states=noisy_input(latents, noise, sigma),
            timestep=(sigma * 1000)[:, None].expand(-1, tokens),
            encoder_hidden_states=text,
            return_dict=False,
        )[0]
        loss = torch.nn.functional.mse_loss(predicted.float(), velocity_target(latents, noise))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss.item()  # the trainer reads the loss every step too
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def interleaved_step_times(trainer: GenericTrainer, steps: int) -> tuple[list[float], list[float]]:
    """Trainer steps and bare steps taken turn about, each bare step on the batch of the trainer step before it.

    A shared or virtual machine's speed drifts by 10% and more within a minute; turn about, both sides see the
    same drift. The bare step runs inside the trainer's step callback and its time is left out of the trainer's
    interval, which spans one whole loop iteration (hooks, next batch, forward, backward, step, logging).
    """
    batches = same_batches(trainer, steps)
    bare_step = BareStep(trainer)
    trainer_times, bare_times = [], []
    last_end = None

    def after_step(progress, loss) -> None:
        nonlocal last_end
        now = time.perf_counter()
        if last_end is not None:
            trainer_times.append(now - last_end)
            bare_times.append(bare_step(*batches[progress.global_step - 1]))
        last_end = time.perf_counter()

    trainer.step_callbacks.append(after_step)
    trainer.train()
    return trainer_times, bare_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_tiny_model("TI2V-5B", root / "model", transformer_size=TRANSFORMER)
        make_demo_data(root / "data")
        trainer = GenericTrainer(config_from_dict(make_config(root, args.steps, args.device)))
        trainer.load_and_cache()
        trainer.set_up_training()
        warmup = 5  # first-call allocations and thread pools
        trainer_times, bare_times = (times[warmup:] for times in interleaved_step_times(trainer, args.steps))
    # Medians: a single step stalled by another process says nothing about the loop.
    trainer_step, bare_step = statistics.median(trainer_times), statistics.median(bare_times)
    print(f"device: {trainer.device}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"trainer step (median of {len(trainer_times)}): {trainer_step * 1000:.1f} ms")
    print(f"bare step    (median of {len(bare_times)}, turn about): {bare_step * 1000:.1f} ms")
    paired = statistics.median(t / b for t, b in zip(trainer_times, bare_times))
    print(f"median of per-step ratios (each trainer step / the bare step beside it): {paired:.3f}")
    print(f"loop overhead ratio: {trainer_step / bare_step:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    sys.exit(run_script(main))
