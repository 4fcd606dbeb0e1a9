"""When the trainer writes samples and measures the validation loss: every N steps, epochs or minutes.

Pure decisions (no model, no files), so the rules are tested on their own. The clock is injectable because
"every N minutes" must be testable without waiting minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SampleSchedule:
    def __init__(self, sampling, clock: Callable[[], float] = time.monotonic):
        self.every_steps = sampling.every_steps
        self.every_epochs = sampling.every_epochs
        self.every_seconds = sampling.every_minutes * 60.0
        self.before_training = sampling.sample_before_training
        self.at_end = sampling.sample_at_end
        self.validation_every_steps = sampling.validation_every_steps
        self.clock = clock
        self.last_samples = clock()

    def samples_after_step(self, global_step: int) -> bool:
        """After optimizer step `global_step` (1-based): its step is a multiple of N, or N minutes have passed."""
        if self.every_steps and global_step % self.every_steps == 0:
            return True
        return bool(self.every_seconds) and self.clock() - self.last_samples >= self.every_seconds

    def samples_after_epoch(self, completed_epochs: int) -> bool:
        return bool(self.every_epochs) and completed_epochs % self.every_epochs == 0

    def validation_after_step(self, global_step: int) -> bool:
        return bool(self.validation_every_steps) and global_step % self.validation_every_steps == 0

    def sampled(self) -> None:
        """Samples were just written: the minutes count from now (sampling time itself is not training time)."""
        self.last_samples = self.clock()
