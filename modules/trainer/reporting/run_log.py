"""What the user sees while training: the progress bar and the TensorBoard scalars."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from modules.trainer.reporting import run_events


class RunLog:
    def __init__(self, total_steps: int, start_step: int, tensorboard_dir: Path | None, visible: bool = True):
        # Not visible: a process other than the main one of several, which shows nothing.
        self.visible = visible
        self.bar = tqdm(
            total=total_steps, initial=start_step, desc="training", unit="step", dynamic_ncols=True, disable=not visible
        )
        self.smoothed_loss: float | None = None
        self.writer = None
        run_events.emit("start", total_steps=total_steps, start_step=start_step)
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(tensorboard_dir))

    def step(self, global_step: int, loss: float, learning_rate: float) -> None:
        # An exponential moving average reads better than the noisy per-step flow-matching loss.
        self.smoothed_loss = loss if self.smoothed_loss is None else 0.95 * self.smoothed_loss + 0.05 * loss
        self.bar.set_postfix(
            loss=f"{loss:.4f}", smooth=f"{self.smoothed_loss:.4f}", lr=f"{learning_rate:.2e}", refresh=False
        )
        self.bar.update(1)
        run_events.emit("step", step=global_step, total_steps=self.bar.total, loss=loss, lr=learning_rate)
        if self.writer is not None:
            self.writer.add_scalar("loss/train", loss, global_step)
            self.writer.add_scalar("loss/train_smoothed", self.smoothed_loss, global_step)
            self.writer.add_scalar("lr", learning_rate, global_step)

    def message(self, text: str) -> None:
        if self.visible:
            self.bar.write(text)
            run_events.emit("message", text=text)

    def sample_written(self, path: Path) -> None:
        self.message(f"sample written: {path}")
        run_events.emit("sample", path=str(path))

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
