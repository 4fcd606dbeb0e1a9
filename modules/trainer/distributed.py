"""Several processes (GPUs, machines) training one model: what the trainer does differently when there are.

Everything goes through accelerate's process state and torch.distributed (gloo on CPU, NCCL on GPUs); the
launcher (`accelerate launch` or torchrun, see docs/multi_gpu.md) starts the processes and ends them all when
one fails. With one process every method here is a no-op, so the single-process trainer is unchanged.

Two ways of splitting the work, chosen by what the training method trains:
- Data parallel (LoRA, embeddings): every process holds the whole model and trains on its own share of
  each step's batch (modules/data/flow/batching.py); before the optimizer step the gradients of the parameters
  that received one are averaged with one all-reduce, so every process takes the same step. This is what
  DistributedDataParallel does, done once per optimizer step on the trainer's own parameter list rather
  than by wrapping the model: the trained tensors need not live in one module (an embedding's vectors, a
  LoRA shared by both A14B experts), gradient checkpointing and accumulation need no special handling, and
  the expert that did not train on a step (A14B) has no gradient and so sends nothing.
- Sharded (full fine-tuning, when the setup names blocks in `sharding_plan`): torch's FSDP2 `fully_shard`
  per transformer block and then per expert over a one-dimensional device mesh, the engine accelerate's
  FSDP (version 2) uses. Weights, gradients and the optimizer state are split between the processes
  (float32 master weights included); FSDP itself averages gradients (reduce-scatter) in backward.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs

from modules.util.errors import UserError

log = logging.getLogger("wan_trainer.distributed")

# Non-main processes wait at a barrier while the main one builds the cache; that can take long.
CACHE_WAIT = timedelta(hours=6)


def check_sharded_config(config) -> None:
    """The settings a run whose weights are sharded over several processes (BaseModelSetup.shards_weights, FSDP)
    cannot serve; checked before loading (modules/trainer/guards/preflight.py) and again when sharding."""
    if config.ema.enabled:
        raise DistributedError(
            "ema.enabled: the EMA is not supported for full fine-tuning on several processes (sharded weights); "
            "turn it off or train on one process"
        )
    if config.sampling.samples or config.sampling.validation_concept:
        raise DistributedError(
            "sampling.samples / sampling.validation_concept: samples and validation loss during full "
            "fine-tuning on several processes are not supported (the weights are sharded); set "
            "sampling.samples to [] and sampling.validation_concept to '', then sample the saved model "
            "with scripts/sample.py"
        )
    if config.memory.blocks_to_swap:
        raise DistributedError(
            "memory.blocks_to_swap: block swapping is not supported for full fine-tuning on several processes; "
            "FSDP already splits each block's weights between the processes. Set it to 0"
        )


class DistributedError(UserError, RuntimeError):
    """A setting or state that several processes cannot work with; the message says what to change."""


def create_accelerator(cpu: bool) -> Accelerator:
    return Accelerator(cpu=cpu, kwargs_handlers=[InitProcessGroupKwargs(timeout=CACHE_WAIT)])


def _dtensor_class():
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without distributed support: nothing can be a DTensor
        return ()
    return DTensor


class Distributed:
    def __init__(self, accelerator: Accelerator | None = None):
        """`accelerator` None: one process (for callers that build a training state without a trainer)."""
        self.accelerator = accelerator
        self.rank = accelerator.process_index if accelerator else 0
        self.world_size = accelerator.num_processes if accelerator else 1
        self.is_main = accelerator.is_main_process if accelerator else True
        self.several = self.world_size > 1
        self.sharded_roots: list[torch.nn.Module] = []

    # ---- start -----------------------------------------------------------------------------------
    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Process 0 runs the block first (building the cache) while the others wait; then the first process of
        each other machine (finding the cache built if the machines share it, else building its machine's copy);
        then the rest, which only read. No two processes ever build at the same time."""
        if not self.several:
            yield
            return
        with self.accelerator.main_process_first(), self.accelerator.local_main_process_first():
            yield

    def describe_batch(self, config) -> str:
        training = config.training
        per_step = training.batch_size * self.world_size * training.gradient_accumulation_steps
        return (
            f"{self.world_size} process(es) x batch {training.batch_size} x {training.gradient_accumulation_steps} "
            f"accumulation step(s) = {per_step} samples per optimizer step; learning rate "
            f"{training.learning_rate:g} as configured (not scaled with the number of processes)"
        )

    def prepare_model(self, setup, model, config) -> None:
        """Shard the experts with FSDP when the setup has a sharding plan (full fine-tuning) and there are
        several processes. Must run after the setup placed the model and before the optimizer is created."""
        if not self.several:
            return
        plan = setup.sharding_plan(model)
        if not plan:
            return
        check_sharded_config(config)  # also checked before loading (preflight), for callers that skip it
        if config.experts.offload_inactive_expert and len(plan) > 1:
            raise DistributedError(
                "experts.offload_inactive_expert: not supported for full fine-tuning on several processes; FSDP "
                "already splits both experts between the processes. Set it to false"
            )
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        device = self.accelerator.device
        mesh = init_device_mesh(device.type, (self.world_size,))
        for root, blocks in plan:
            for block in blocks:
                fully_shard(block, mesh=mesh)
            fully_shard(root, mesh=mesh)
            self.sharded_roots.append(root)
        log.info("FSDP: %d expert(s) sharded per block over %d processes", len(plan), self.world_size)

    @property
    def sharded(self) -> bool:
        return bool(self.sharded_roots)

    # ---- every step ------------------------------------------------------------------------------
    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over every process (the loss as one process with the whole batch sees it)."""
        if not self.several:
            return float(value.detach())
        return float(self.accelerator.reduce(value.detach().float().reshape(1).clone(), reduction="mean"))

    def average_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Average the gradients of the data-parallel path: one flat all-reduce per dtype. Parameters without a
        gradient on this step (the inactive A14B expert) are left out; every process must agree on which."""
        if not self.several or self.sharded:
            return
        with_grad = [p for p in parameters if p.grad is not None]
        # Which tensors have a gradient, as (count, sum of positions): the processes must agree, or the
        # all-reduce below would add up gradients of different tensors.
        which = [len(with_grad), sum(i for i, p in enumerate(parameters) if p.grad is not None)]
        seen = self.accelerator.gather(torch.tensor([which], device=self.accelerator.device)).tolist()
        if any(other != which for other in seen):
            raise DistributedError(
                f"the processes computed gradients for different parameters (count, positions: {seen}); every "
                "process must train the same expert on a step"
            )
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for parameter in with_grad:
            by_dtype.setdefault(parameter.grad.dtype, []).append(parameter.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            flat = self.accelerator.reduce(flat, reduction="mean")
            offset = 0
            for grad in grads:
                grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
                offset += grad.numel()

    # ---- saving and backups ----------------------------------------------------------------------
    @contextmanager
    def full_weights_for_saving(self) -> Iterator[None]:
        """While saving, each sharded expert's `state_dict()` returns its full weights on the main process (and
        nothing elsewhere): the saver then writes the same files as one process does. Every process must enter."""
        if not self.sharded:
            yield
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full = [get_model_state_dict(root, options=options) for root in self.sharded_roots]
        try:
            for root, state_dict in zip(self.sharded_roots, full):
                # An instance attribute shadows the method for the saver's call only; removed below.
                root.state_dict = _returning(state_dict)
            yield
        finally:
            for root in self.sharded_roots:
                root.__dict__.pop("state_dict", None)

    def full_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sharded tensors gathered whole (a collective: every process calls it with the same names in the same
        order), so backups hold the same tensors whatever the number of processes."""
        dtensor = _dtensor_class()
        return {name: t.full_tensor() if isinstance(t, dtensor) else t for name, t in tensors.items()}

    def main_decides(self, flag: bool) -> bool:
        """The main process's `flag` on every process, for decisions that depend on a clock."""
        if not self.several:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(value if self.is_main else value * 0, reduction="sum").item())

    def barrier(self) -> None:
        if self.several:
            self.accelerator.wait_for_everyone()


def copy_into(parameter: torch.Tensor, full: torch.Tensor) -> None:
    """Copy a whole tensor into a parameter, or into this process's shard of a sharded one."""
    dtensor = _dtensor_class()
    if isinstance(parameter, dtensor):
        parameter.copy_(like_shards_of(full, parameter))
    else:
        parameter.copy_(full)


def like_shards_of(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`full` split the way `like` (a DTensor) is split; `full` unchanged when `like` is an ordinary tensor."""
    dtensor = _dtensor_class()
    if not isinstance(like, dtensor):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(like.device, like.dtype), like.device_mesh, like.placements, src_data_rank=None)


def shard_optimizer_state(state_dict: dict, parameters: list[torch.Tensor]) -> dict:
    """An optimizer state dict of whole tensors (from a backup) split like the sharded parameters it belongs to.
    The optimizer numbers parameters in the order of its groups, which is the trainer's parameter order."""
    for index, entry in state_dict["state"].items():
        parameter = parameters[int(index)]
        for key, value in entry.items():
            if torch.is_tensor(value) and value.shape == parameter.shape and value.dim() > 0:
                entry[key] = like_shards_of(value, parameter)
    return state_dict


def _returning(value):
    def state_dict(*args, **kwargs):
        return value

    return state_dict


class QuietSampleHooks:
    """What a process other than the main one runs instead of the sample hooks (sample_hooks.py): no samples."""

    def before_training(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_epoch(self, completed_epochs: int) -> None:
        pass

    def sample(self, tag: str) -> list:
        return []
