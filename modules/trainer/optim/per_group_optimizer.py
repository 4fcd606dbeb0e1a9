"""One inner optimizer per parameter group, seen by the trainer as one optimizer.

Prodigy estimates one step size for all its parameters and refuses parameter groups with different learning
rates, but each A14B expert is its own group and may have its own rate (experts.*_learning_rate). Here each
group gets its own inner optimizer (so each expert its own step-size estimate), while the group dicts and the
per-parameter state are the very objects of this wrapper: the LR schedule, gradient clipping, zero_grad and
state_dict()/load_state_dict() (backups) work on it as on any torch optimizer. A group whose parameters have no
gradient in a step (the expert that did not train) is not stepped, so its inner optimizer does not advance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class PerGroupOptimizer(torch.optim.Optimizer):
    def __init__(self, groups: list[dict], make: Callable[[list[dict]], torch.optim.Optimizer]):
        self.inner = [make([group]) for group in groups]
        super().__init__([inner.param_groups[0] for inner in self.inner], defaults={})
        self._link()

    def _link(self) -> None:
        """Each inner optimizer works on this wrapper's group dict and state (after init and after loading)."""
        for inner, group in zip(self.inner, self.param_groups):
            inner.param_groups = [group]
            inner.state = self.state

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for inner, group in zip(self.inner, self.param_groups):
            if any(p.grad is not None for p in group["params"]):
                inner.step()
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._link()
