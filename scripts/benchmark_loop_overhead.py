"""Loop overhead: the trainer's steady-state step time / a bare forward + backward + optimizer step.

Both run in this one process on the same model (TI2V-5B structure, 4 layers, dim 256), the same LoRA,
batch shape and optimizer. Prints the ratio; the goal is 1.05 or less. Results go in docs/benchmarks.md.

    python scripts/benchmark_loop_overhead.py [--steps 30] [--device auto]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _repo_path  # noqa: F401
import torch

from modules.config.loading import config_from_dict
from modules.data.demo_data import make_demo_data
from modules.module.flow_matching import noisy_input, velocity_target
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.tiny_models import write_tiny_model

TRANSFORMER = dict(num_layers=4, heads=4, head_dim=64)


def make_config(root: Path, steps: int, device: str) -> dict:
    return {
        "model": {"base_path": str(root / "model"), "transformer_dtype": "float32", "text_encoder_dtype": "float32"},
        "lora": {"rank": 16, "alpha": 16.0},
        # 256 px and 17 frames: 5 x 8 x 8 = 320 video tokens per clip, plus 512 text tokens.
        "data": {"concepts": [{"path": str(root / "data")}], "resolution": 256, "frames": 17, "min_frames": 17},
        "training": {"max_steps": steps, "learning_rate": 1e-4, "train_dtype": "float32",
                     "gradient_checkpointing": False, "device": device, "max_grad_norm": 1.0},
        "output": {"workspace_dir": str(root / "run"), "tensorboard": True},
        "sampling": {"samples": []},
    }


def trainer_step_times(trainer: GenericTrainer) -> list[float]:
    stamps = []
    trainer.step_callbacks.append(lambda progress, loss: stamps.append(time.perf_counter()))
    trainer.train()
    return [b - a for a, b in zip(stamps, stamps[1:])]


def same_batches(trainer: GenericTrainer, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches the trainer saw, in its order (buckets differ in size), preloaded on the device."""
    batches, epoch = [], 0
    while len(batches) < steps:
        batches += [(b["latents"].to(trainer.device), b["text_embeds"].to(trainer.device)) for b in trainer.data.batches(epoch)]
        epoch += 1
    return batches[:steps]


def bare_step_times(trainer: GenericTrainer, steps: int) -> list[float]:
    """The same work with nothing around it: the same batches, already on the device."""
    device = trainer.device
    transformer = trainer.model.transformer
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, foreach=True)
    times = []
    for latents, text in same_batches(trainer, steps):
        _, _, frames, height, width = latents.shape
        tokens = frames * (height // 2) * (width // 2)
        start = time.perf_counter()
        sigma = torch.rand(latents.shape[0], device=device)
        noise = torch.randn_like(latents)
        predicted = transformer(
            hidden_states=noisy_input(latents, noise, sigma),
            timestep=(sigma * 1000)[:, None].expand(-1, tokens),
            encoder_hidden_states=text,
            return_dict=False,
        )[0]
        loss = torch.nn.functional.mse_loss(predicted.float(), velocity_target(latents, noise))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the trainer reads the loss every step too
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


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
        warmup = 5
        # Bare runs before and after the trainer, so a change in machine load during the run (a shared machine)
        # weighs on both sides alike. Step i's interval covers batch i + 1; compare the same batches.
        bare_times = bare_step_times(trainer, args.steps)[warmup + 1:]
        trainer_times = trainer_step_times(trainer)[warmup:]
        bare_times += bare_step_times(trainer, args.steps)[warmup + 1:]
    # Medians: a single step stalled by another process says nothing about the loop.
    trainer_step, bare_step = statistics.median(trainer_times), statistics.median(bare_times)
    print(f"device: {trainer.device}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"trainer step (median of {len(trainer_times)}): {trainer_step * 1000:.1f} ms")
    print(f"bare step    (median of {len(bare_times)}, before and after): {bare_step * 1000:.1f} ms")
    print(f"loop overhead ratio: {trainer_step / bare_step:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
