"""Samples and validation loss during training: what the trainer calls before the first step, after each
step and epoch, and at the end.

A sample that fails (a start image deleted mid-run, a full disk, an unwritable folder) is logged and
skipped: a preview must never cost hours of training. What can be checked up front (the video encoder,
the validation data) is checked before the first step instead, with an error that says what to fix.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch

from modules.trainer.guards.oom import sample_oom_note
from modules.trainer.optim.optimizer_modes import optimizer_eval_weights
from modules.trainer.samples.sample_schedule import SampleSchedule
from modules.trainer.samples.validation_loss import ValidationLoss
from modules.trainer.state.training_state import TrainingState
from modules.util.errors import UserError

log = logging.getLogger("wan_trainer.samples")
STRIP_FRAMES = 8  # frames shown side by side when TensorBoard gets an image instead of a video


def frame_strip(video: np.ndarray, frames: int = STRIP_FRAMES) -> np.ndarray:
    """(H, W * k, 3) uint8: k evenly spaced frames side by side, first and last included."""
    picks = np.unique(np.linspace(0, len(video) - 1, min(frames, len(video))).round().astype(int))
    return np.concatenate(list(video[picks]), axis=1)


class SampleHooks:
    def __init__(self, run_state: TrainingState, plugin, run_log):
        self.run_state = run_state
        self.run_log = run_log
        config = run_state.config
        self.samples = config.sampling.samples
        self.schedule = SampleSchedule(config.sampling)
        self.sampler = plugin.sampler.for_training(config, run_state.device) if self.samples else None
        self.tensorboard = config.sampling.tensorboard and run_log.writer is not None
        self.written: list[Path] = []
        self.failures = 0
        if self.sampler is not None:
            self.sampler.preflight()  # a missing encoder is found now, not after the first hour
        self.validation = None
        if config.sampling.validation_concept:
            self.validation = ValidationLoss(plugin, run_state.model, config, run_state.device)

    # ---- what the trainer calls ---------------------------------------------------------------------
    def before_training(self) -> None:
        if self.schedule.before_training:
            self.sample(f"before-step{self.run_state.progress.global_step:06d}")

    def after_step(self) -> None:
        step = self.run_state.progress.global_step
        if self.validation is not None and self.schedule.validation_after_step(step):
            self.measure_validation()
        last = step >= self.run_state.config.training.max_steps
        # The last step's samples are the end samples when those are on; never both.
        if self.schedule.samples_after_step(step) and not (last and self.schedule.at_end):
            self.sample(f"step{step:06d}")

    def after_epoch(self, completed_epochs: int) -> None:
        if self.schedule.samples_after_epoch(completed_epochs):
            self.sample(f"epoch{completed_epochs:04d}-step{self.run_state.progress.global_step:06d}")

    # ---- the work -----------------------------------------------------------------------------------
    def sample(self, tag: str) -> list[Path]:
        """Write every sample definition under <workspace>/samples; a failing one is logged and skipped."""
        written = []
        step = self.run_state.progress.global_step
        for index, sample_config in enumerate(self.samples or []):
            destination = self.run_state.workspace / "samples" / f"{tag}-{index}.mp4"
            try:
                with self._weights_to_show():
                    path = self.sampler.sample(
                        self.run_state.model, sample_config, destination, extra={"step": step, "tag": tag}
                    )
            except Exception as error:  # noqa: BLE001 - any failure of a preview is reported, never fatal
                self.failures += 1
                # A user error (a start image deleted mid-run) says all in its message; a traceback only for bugs.
                trace = not isinstance(error, UserError)
                log.warning("sample %d (%s) failed at step %d: %s", index, tag, step, error, exc_info=trace)
                note = (
                    sample_oom_note(self.run_state.config, self.run_state.device, self.run_state.model)
                    if isinstance(error, torch.OutOfMemoryError)
                    else "training goes on"
                )
                self.run_log.message(f"sample {index} failed at step {step}: {type(error).__name__}: {error}; {note}")
                continue
            written.append(path)
            self.run_log.sample_written(path)
            self._log_tensorboard(index, step)
        self.schedule.sampled()
        self.written += written
        return written

    @contextlib.contextmanager
    def _weights_to_show(self):
        """What will be saved: the EMA weights when EMA is on, else the live weights (a schedule-free
        optimizer's averaged ones)."""
        from modules.trainer.state.ema import ema_weights_in_use

        with optimizer_eval_weights(self.run_state.optimizer), ema_weights_in_use(self.run_state.ema):
            yield

    def measure_validation(self) -> dict[float, float]:
        run = self.run_state
        with optimizer_eval_weights(run.optimizer):  # schedule-free: the averaged weights
            losses = self.validation.measure(run.model, run.setup, run.progress)
        step = run.progress.global_step
        for sigma, loss in losses.items():
            if self.run_log.writer is not None:
                self.run_log.writer.add_scalar(ValidationLoss.tag(sigma), loss, step)
        self.run_log.message(
            f"step {step}: validation loss " + ", ".join(f"sigma {s:.2f}: {v:.4f}" for s, v in losses.items())
        )
        return losses

    def _log_tensorboard(self, index: int, step: int) -> None:
        result = self.sampler.last_result
        if not self.tensorboard or result is None or result.video is None:
            return
        writer = self.run_log.writer
        writer.add_image(f"samples/{index}", frame_strip(result.video), step, dataformats="HWC")
        if importlib.util.find_spec("moviepy") is not None:  # TensorBoard's video summary needs moviepy
            video = torch.from_numpy(result.video).permute(0, 3, 1, 2).unsqueeze(0)  # (1, F, C, H, W)
            writer.add_video(f"samples/{index}/video", video, step, fps=int(round(result.fps)))
        result.video = None  # the frames are not needed any more; do not hold them until the next sample
