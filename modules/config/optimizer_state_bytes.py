"""Bytes of optimizer state each optimizer keeps per trained parameter (float32 parameters, large tensors).

The memory planner (modules/memory/plan.py) reads this table; tests/test_optimizer_state_bytes.py fails when an
optimizer of the trainer's optimizer_registry.py has no entry and compares each entry with the state tensors a real
step creates. It lives with the optimizer settings (optimizer_config.py), below both the planner and the trainer,
and is kept free of torch and of the optimizer libraries so the planner (and the window) can import it cheaply.

Per-tensor constants (bitsandbytes' 256-entry quantisation maps, the factored row/column statistics of Adafactor
and CAME) are left out: they vanish next to the per-element state of a real model's tensors.
"""

from __future__ import annotations

from collections.abc import Callable

# bitsandbytes' 8-bit optimizers: one byte per element and state, plus one float32 absmax per block of 256.
_EIGHT_BIT = 1 + 4 / 256

# name -> bytes per trained parameter, as a function of the `training` config section (a few depend on settings).
OPTIMIZER_STATE_BYTES: dict[str, Callable[[object], float]] = {
    "adamw": lambda training: 8.0,  # exp_avg, exp_avg_sq
    "adamw_8bit": lambda training: 2 * _EIGHT_BIT,  # state1, state2 in 8 bits
    "paged_adamw": lambda training: 8.0,  # state1, state2 in float32 (paged to the CPU under pressure)
    "paged_adamw_8bit": lambda training: 2 * _EIGHT_BIT,
    "prodigy": lambda training: 16.0,  # exp_avg, exp_avg_sq, s, p0 (the initial weights)
    # Factored second moment only (row and column sums); beta1 > 0 adds a full first moment.
    "adafactor": lambda training: 4.0 if training.adafactor.beta1 else 0.0,
    "came": lambda training: 4.0,  # exp_avg; second moment and residual are factored
    "lion": lambda training: 4.0,  # exp_avg
    "lion_8bit": lambda training: _EIGHT_BIT,
    "schedule_free_adamw": lambda training: 8.0,  # z, exp_avg_sq
    "lamb": lambda training: 8.0,  # exp_avg, exp_avg_sq (pytorch-optimizer's Lamb)
}


def optimizer_state_bytes(training) -> float:
    """Bytes of state per trained parameter of `training.optimizer` with these settings."""
    return OPTIMIZER_STATE_BYTES[training.optimizer](training)
