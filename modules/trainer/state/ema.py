"""EMA of the trained weights: ema = decay * ema + (1 - decay) * weights, every `update_interval` steps.

The EMA copy is float32 whatever the weights' dtype: with decay near 1 each update moves the average by
(1 - decay) times the difference, which a bf16 copy would round away. Samples and saves use the EMA by
swapping it into the live parameters and restoring the exact training weights afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch


class EmaWeights:
    def __init__(self, parameters: list[torch.nn.Parameter], decay: float, update_interval: int, device: torch.device):
        self.parameters = list(parameters)
        self.decay = decay
        self.update_interval = update_interval
        self.device = device
        self.shadow = [p.detach().to(device, torch.float32, copy=True) for p in self.parameters]

    @torch.no_grad()
    def update(self, global_step: int) -> None:
        """Called after optimizer step `global_step` (1-based); updates on every `update_interval`-th step."""
        if global_step % self.update_interval:
            return
        for average, parameter in zip(self.shadow, self.parameters):
            average.lerp_(parameter.detach().to(average.device, torch.float32), 1.0 - self.decay)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Load the EMA into the parameters for the duration of the block, then put the training weights back."""
        saved = [p.detach().to("cpu", copy=True) for p in self.parameters]
        try:
            with torch.no_grad():
                for parameter, average in zip(self.parameters, self.shadow):
                    parameter.copy_(average)
            yield
        finally:
            with torch.no_grad():
                for parameter, original in zip(self.parameters, saved):
                    parameter.copy_(original)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{index}": average.detach().cpu() for index, average in enumerate(self.shadow)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for index, average in enumerate(self.shadow):
            average.copy_(tensors[f"ema.{index}"])


def create_ema(ema_config, parameters: list[torch.nn.Parameter], train_device: torch.device) -> EmaWeights | None:
    if not ema_config.enabled:
        return None
    device = torch.device("cpu") if ema_config.device == "cpu" else train_device
    return EmaWeights(parameters, ema_config.decay, ema_config.update_interval, device)


def ema_weights_in_use(ema: EmaWeights | None):
    """A context that swaps the EMA in when there is one (a no-op otherwise), for samples and saves."""
    return ema.swapped_in() if ema is not None else nullcontext()
