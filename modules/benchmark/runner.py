"""One benchmark configuration: a real-shape (or tiny) random model trained by GenericTrainer on synthetic latents.

The steps timed are the trainer's own (its loop, setup, optimizer and hooks); only the model's weights and the
data are made up, so no checkpoint or media is needed. Every number is measured in this process.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from modules.benchmark.block_tracker import BlockTracker
from modules.benchmark.device_peaks import peak_tflops
from modules.benchmark.flops import TransformerShape, training_step_flops
from modules.benchmark.synthetic_data import SyntheticLatents
from modules.config.train_config import TrainConfig
from modules.module.host_buffer import pinned_bytes
from modules.registry import benchmark_kit_for, plugin_for
from modules.trainer.generic_trainer import GenericTrainer
from modules.trainer.guards.oom import OutOfMemoryStop
from modules.util.device import DTYPES

GIB = 1024**3
TEXT_TOKENS = 512  # the pipelines pad every prompt to 512 UMT5 tokens


@dataclass
class Measure:
    """What to run besides the config: step counts, tiny sizes, a memory cap, a forced OOM place."""

    steps: int = 10
    warmup: int = 3
    tiny: dict | None = None  # transformer sizes (num_layers, heads, head_dim) for a CPU run
    memory_cap_gib: float | None = None
    fail_at: str | None = None
    peak_tflops: float | None = None
    width: int | None = None  # pixels; default: data.resolution (square)
    height: int | None = None


def _host_peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / GIB
    return float("nan")


def _latent_shape(config: TrainConfig, measure: Measure) -> tuple[int, int, int, int]:
    """(channels, frames, height, width) of one sample's latents, as the VAE would give for the clip size."""
    height = measure.height or config.data.resolution
    width = measure.width or config.data.resolution
    return benchmark_kit_for(config).latent_shape(config, height, width)


def run_configuration(name: str, config: TrainConfig, measure: Measure) -> dict:
    """Train `measure.steps` steps and return one result row (status 'ok', 'oom' or 'error')."""
    device = torch.device(config.training.device if config.training.device != "auto" else _auto_device())
    kit = benchmark_kit_for(config)  # the model family's part (modules/registry.py)
    row = {
        "name": name,
        "status": "ok",
        "memory_cap_gib": measure.memory_cap_gib,
        "width": measure.width or config.data.resolution,
        "height": measure.height or config.data.resolution,
    }
    cap_note = _apply_memory_cap(device, measure.memory_cap_gib)
    if cap_note:
        return {**row, "status": "skipped", "error": cap_note}
    trainer = tracker = None
    try:
        with tempfile.TemporaryDirectory() as workspace:
            config.output.workspace_dir = workspace
            channels, frames, height, width = _latent_shape(config, measure)  # a refused size fails before building
            model = kit.benchmark_model(
                config,
                device,
                DTYPES.get(config.model.transformer_dtype, torch.bfloat16),
                fp8=config.model.transformer_dtype == "float8_e4m3fn",
                tiny=measure.tiny,
            )
            shape = TransformerShape.of(
                dict(model.transformer.config), (frames, height, width), TEXT_TOKENS, kit.expands_timesteps(config)
            )
            data = SyntheticLatents(
                (channels, frames, height, width),
                (TEXT_TOKENS, model.transformer.config.text_dim),
                config.training.batch_size,
                batches_per_epoch=measure.steps,
                image_condition=kit.conditions_on_image(config),
            )
            # The plugin's own classes, except its data loader: the trainer's checks before training then look at
            # the synthetic data (nothing on disk) instead of concept folders.
            plugin = replace(plugin_for(config.model_type, config.training_method), data_loader=lambda: data)
            trainer = GenericTrainer(config, plugin)
            trainer.model = model
            trainer.data = data
            start = time.perf_counter()
            trainer.set_up_training()
            setup_seconds = time.perf_counter() - start
            if device.type == "cuda":  # the peaks of training, not of building and placing the model
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            tracker = BlockTracker(model.transformer.blocks, measure.fail_at)
            step_times, losses = _timed_training(trainer, tracker, device)
            row.update(
                _speed_fields(step_times, measure, shape, config, device),
                setup_seconds=setup_seconds,
                tokens_per_sample=shape.video_tokens,
                losses=losses,
                **_memory_fields(device),
            )
    except (torch.OutOfMemoryError, OutOfMemoryStop) as error:
        # In a step the trainer's own guard turns the error into OutOfMemoryStop (after its backup); the place comes
        # from the tracker, the device's own words from the original error.
        original = error.__cause__ if isinstance(error, OutOfMemoryStop) and error.__cause__ else error
        where = tracker.where if tracker else "while building the model"
        cap = f" at {measure.memory_cap_gib:g} GB" if measure.memory_cap_gib else ""
        row.update(status="oom", error=f"OOM{cap} in {where}", detail=str(original).splitlines()[0][:300])
        row.update(_memory_fields(device))
    except Exception as error:  # noqa: BLE001 - any failure is a result row; the next configuration still runs
        row.update(status="error", error=f"{type(error).__name__}: {error}"[:500], detail=_traceback_tail())
    finally:
        if tracker is not None:
            tracker.remove()
        del trainer
        _release(device)
    return row


def _traceback_tail() -> str:
    import traceback

    return "".join(traceback.format_exc().splitlines(keepends=True)[-12:])


def _auto_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _apply_memory_cap(device: torch.device, cap_gib: float | None) -> str | None:
    """Cap this process's device memory (a smaller card on a bigger one); a note when it cannot be applied."""
    if device.type != "cuda":
        return "memory caps need a CUDA/ROCm device" if cap_gib else None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = 1.0 if cap_gib is None else cap_gib * GIB / total
    if fraction > 1.0:
        return f"this card has {total / GIB:.0f} GiB, less than the {cap_gib:g} GB cap"
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    torch.cuda.reset_peak_memory_stats(device)
    return None


def _timed_training(trainer: GenericTrainer, tracker: BlockTracker, device: torch.device):
    """Seconds and loss of each optimizer step; a step is the interval between the trainer's step callbacks."""
    times: list[float] = []
    losses: list[float] = []
    last = [time.perf_counter()]

    def after_step(progress, loss) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        times.append(now - last[0])
        losses.append(loss)
        tracker.new_step()
        last[0] = time.perf_counter()

    trainer.config.training.max_steps = trainer.data.batches_per_epoch()
    trainer.step_callbacks.append(after_step)
    trainer.train()
    return times, losses


def _speed_fields(times: list[float], measure: Measure, shape, config: TrainConfig, device) -> dict:
    warm, steady = times[: measure.warmup], times[measure.warmup :] or times[-1:]
    median = statistics.median(steady)
    flops = training_step_flops(
        shape,
        config.training.batch_size,
        "full" if config.training_method == "full" else "lora",
        lora_rank=config.lora.rank,
        gradient_checkpointing=config.training.gradient_checkpointing,
    )
    achieved = flops.model / median / 1e12
    peak = measure.peak_tflops or (peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None)
    return {
        "warmup_s": warm,
        "steady_s_median": median,
        "steady_s_min": min(steady),
        "steady_s_max": max(steady),
        "steady_steps": len(steady),
        "first_step_minus_steady_s": times[0] - median,  # compile time, first-call allocations
        "tokens_per_s": shape.video_tokens * config.training.batch_size / median,
        "flops_per_step": flops.as_dict(),
        "achieved_tflops": achieved,
        "hardware_tflops": flops.hardware / median / 1e12,
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
    }


def _memory_fields(device: torch.device) -> dict:
    fields = {"host_peak_rss_gib": _host_peak_rss_gib()}
    # Page-locked host memory of the swap's staging and offloading's slots (the host plan's pinned terms).
    fields["host_pinned_peak_gib"] = pinned_bytes()[1] / GIB
    if device.type == "cuda":
        fields["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / GIB
        fields["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / GIB
    else:
        fields["peak_allocated_gib"] = fields["peak_reserved_gib"] = None
    return fields


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.set_per_process_memory_fraction(1.0, device)
