"""A loss that became NaN or infinite: find the cause before giving advice, and keep the last good weights.

"Lower the learning rate" is only right when the numbers of training itself ran away. When the batch's own
tensors (cached latents, image condition or text embeddings) hold NaN/Inf, the data is the cause and no
setting helps: the message names the batch's source files and cache entries instead. Either way the weights
of the last good step are written as a backup (the loss is checked before backward, so the weights in
memory are still those of the last finished step), unless they themselves are already non-finite.
"""

from __future__ import annotations

import logging

import torch

from modules.trainer.state.backups import backup_folders

log = logging.getLogger("wan_trainer")
_DATA_KEYS = ("latents", "image_condition", "text_embeds")


def nonfinite_loss_error(trainer, batch: dict, value: float, error_class: type[Exception]) -> Exception:
    """The error to raise for a non-finite loss `value` on `batch`, after writing a backup of the last good step."""
    step = trainer.progress.global_step
    sources = batch.get("sources") or []
    entries = batch.get("cache_entries") or []
    bad_data = _nonfinite_samples(batch)
    batch_files = "\n".join(
        f"  {source}  (cache: {', '.join(map(str, entry))})"
        for source, entry in zip(sources, entries or [[] for _ in sources])
    )
    kept = _keep_last_good(trainer)
    if bad_data:
        named = "\n".join(
            f"  {sources[i] if i < len(sources) else f'sample {i}'}: non-finite {', '.join(keys)} in "
            f"{', '.join(map(str, entries[i])) if i < len(entries) else 'its cache entries'}"
            for i, keys in sorted(bad_data.items())
        )
        return error_class(
            f"the loss became {value} at step {step + 1} because this batch's cached tensors hold NaN/Inf "
            f"(the data is the cause, not a setting):\n{named}\n{kept}\n"
            "Fix: delete those cache entries (they are rebuilt from the source files on the next start) or remove "
            "the source file from its concept, then resume with backup.continue_last_backup=true."
        )
    if not _weights_finite(trainer):
        advice = (
            "The trained weights themselves are already non-finite (an earlier step diverged). Fix: resume from "
            "an earlier backup with a lower training.learning_rate (or training.max_grad_norm > 0), or use "
            "training.train_dtype bfloat16 instead of float16."
        )
    else:
        advice = (
            "The batch's cached tensors are finite, so the numbers of training overflowed. Fix: lower "
            "training.learning_rate (or set training.max_grad_norm > 0), or use training.train_dtype bfloat16 "
            "instead of float16, then resume with backup.continue_last_backup=true."
        )
    return error_class(f"the loss became {value} at step {step + 1} on this batch:\n{batch_files}\n{kept}\n{advice}")


def _nonfinite_samples(batch: dict) -> dict[int, list[str]]:
    """Sample index -> names of that sample's tensors that hold NaN/Inf."""
    bad: dict[int, list[str]] = {}
    for key in _DATA_KEYS:
        tensor = batch.get(key)
        if not torch.is_tensor(tensor):
            continue
        finite = torch.isfinite(tensor.float()).flatten(1).all(dim=1)
        for index in (~finite).nonzero().flatten().tolist():
            bad.setdefault(index, []).append(key)
    return bad


def _weights_finite(trainer) -> bool:
    return all(bool(torch.isfinite(p.detach()).all()) for p in trainer.parameters)


def _keep_last_good(trainer) -> str:
    """Write a backup of the weights in memory (the last finished step's) when they are finite; say where."""
    step = trainer.progress.global_step
    if not _weights_finite(trainer):
        older = backup_folders(trainer.backups.root)
        return (
            f"No backup of step {step} was written (its weights are non-finite); the newest backup is {older[0]}."
            if older
            else f"No backup of step {step} was written (its weights are non-finite), and there is no older one."
        )
    try:
        folder = trainer.backups.write("the loss became non-finite")
    except Exception as error:  # a failing backup must not hide the reason the run stopped
        return f"Writing a backup of step {step} failed too ({type(error).__name__}: {error})."
    if folder is None:
        folder = backup_folders(trainer.backups.root)[0]
    return f"The weights of step {step}, the last good one, are kept in the backup {folder}."
