"""Runs the real trainer in several processes for the multi-process tests (tests/test_distributed.py).

Each process is started with torch.multiprocessing's spawn and joins a real gloo rendezvous on 127.0.0.1 and
a free port (the environment torchrun sets: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE). It trains with
`GenericTrainer` and writes what it observed to `<out>/rank<N>.pt` (plain tensors and lists, read back with
torch.load(weights_only=True)).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import torch


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_processes(config, world_size: int, out: Path, timeout_s: float = 240) -> list[dict]:
    """Train `config` in `world_size` spawned processes; returns each rank's record (see `_train`)."""
    import torch.multiprocessing as mp

    out.mkdir(parents=True, exist_ok=True)
    context = mp.start_processes(
        _train, args=(world_size, free_port(), config, str(out)), nprocs=world_size, start_method="spawn", join=False
    )
    # join() raises ProcessRaisedException with the failing rank's traceback, and ends the other ranks.
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f"{world_size} training processes did not finish within {timeout_s} s")
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(world_size)]


def trained_tensors(trainer) -> dict[str, torch.Tensor]:
    """This process's view of the trained weights: its local shard for sharded (FSDP) tensors."""
    local = {}
    for name, tensor in trainer.setup.trainable_state_dict(trainer.model).items():
        tensor = tensor.detach()
        local[name] = (tensor.to_local() if hasattr(tensor, "to_local") else tensor).clone()
    return local


def _train(rank: int, world_size: int, port: int, config, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)  # two processes on a shared 2-core machine
    from modules.trainer.generic_trainer import GenericTrainer

    trainer = GenericTrainer(config)
    record = train_recorded(trainer)
    torch.save(record, Path(out) / f"rank{rank}.pt")


def train_recorded(trainer) -> dict:
    """Set up and train `trainer`, recording per step which experts' weights changed, the expert the step was
    for, the loss and the (averaged, whole) gradients the optimizer stepped with; and the tensors' layout."""
    trainer.load_and_cache()
    trainer.set_up_training()
    record: dict = {"world_size": trainer.distributed.world_size, "steps": [], "gradients": []}
    named = trainer.setup.trainable_state_dict(trainer.model)
    # How each trained tensor is held here: (global shape, local shape, sharded?).
    record["layout"] = {
        name: (list(t.shape), list((t.to_local() if hasattr(t, "to_local") else t).shape), hasattr(t, "to_local"))
        for name, t in named.items()
    }
    record["initial"] = trained_tensors(trainer)
    before = record["initial"]
    optimizer_step = trainer.optimizer.step

    def step_recording_gradients(*args, **kwargs):
        # Called after the gradients were averaged (and clipped): what every process steps with.
        grads = {}
        for index, parameter in enumerate(trainer.parameters):
            if parameter.grad is not None:
                grad = parameter.grad.detach()
                grads[f"param.{index}"] = (grad.full_tensor() if hasattr(grad, "full_tensor") else grad).clone()
        record["gradients"].append(grads)
        return optimizer_step(*args, **kwargs)

    trainer.optimizer.step = step_recording_gradients

    def after_step(progress, loss):
        nonlocal before
        now = trained_tensors(trainer)
        changed = sorted({name.split(".", 1)[0] for name in now if not torch.equal(now[name], before[name])})
        expert = trainer.setup.expert_for(trainer.model, trainer.config, _previous(progress))
        record["steps"].append({"step": progress.global_step, "changed": changed, "expert": expert, "loss": loss})
        before = now

    trainer.step_callbacks.append(after_step)
    result = trainer.train()
    record["final"] = trained_tensors(trainer)
    record["output_files"] = [str(p) for p in result.output_files]
    return record


def _previous(progress):
    """The progress as it was during the step that just ended (the expert is chosen by the step's number)."""
    from modules.base.model_setup import TrainProgress

    return TrainProgress(global_step=progress.global_step - 1)
