"""A SIGKILL in the middle of writing a backup or a save never leaves a truncated file that looks complete.

A child process writes big backups (and an atomic model save) in a loop; the test kills it with SIGKILL at
random moments. After every kill, each thing on disk must be either complete and valid (every tensor holds
the value of the iteration its marker/metadata names) or a temp file/folder that readers ignore, and the
newest usable backup must still load.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open

from modules.trainer.state.backups import (
    BackupError,
    backup_folders,
    check_backup,
    newest_usable_backup,
    read_backup,
    remove_stale_temp_folders,
)
from modules.util.atomic import TEMP_FOLDER_PREFIX, stale_temp_folders

REPO = Path(__file__).resolve().parent.parent
TENSORS, NUMEL = 8, 1 << 20  # 32 MiB per file: a write takes long enough for kills to land inside it

WRITER = f"""
import sys, torch
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from modules.trainer.state.backups import BackupContents, backup_folders, prune_own_backups, write_backup
from modules.util.atomic import save_safetensors_atomic
root, iteration = Path(sys.argv[1]), int(sys.argv[2])
# One run across the kills (as a resumed run): the backups of the killed writers count as this one's own.
written = list(reversed(backup_folders(root / "backups")))
while True:
    iteration += 1
    big = {{f"t{{k}}": torch.full(({NUMEL},), float(iteration)) for k in range({TENSORS})}}
    rng = {{"g": torch.full((5,), float(iteration))}}
    contents = BackupContents(state={{"iteration": iteration}}, tensors={{"weights": big, "rng": rng}})
    written.append(write_backup(root / "backups", contents, iteration))
    prune_own_backups(written, 2)
    save_safetensors_atomic(big, root / "model.safetensors", {{"iteration": str(iteration)}})
    print(iteration, flush=True)
"""


@contextmanager
def reaped(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Whatever happens in the block, the process is dead and its pipes closed after it (no stray writers)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def sigkill(process: subprocess.Popen) -> None:
    """Kill as a power cut or the OOM killer would: no handler, no cleanup, no flush."""
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def check_backup_contents(contents, folder) -> None:
    value = float(contents.state["iteration"])
    assert check_backup(folder)["global_step"] == contents.state["iteration"]
    for stem, tensors in contents.tensors.items():
        for key, tensor in tensors.items():
            if not bool((tensor == value).all()):
                raise BackupError(f"{folder}/{stem}:{key} does not hold iteration {value}")


def check_everything_on_disk(root: Path) -> tuple[int, int]:
    """Assert the invariant; return (temp leftovers seen, newest usable iteration)."""
    leftovers = 0
    for path in (root / "backups").iterdir():
        if path.name.startswith(TEMP_FOLDER_PREFIX):
            leftovers += 1
            assert path in stale_temp_folders(root / "backups")  # its writer is dead: recognised as garbage
            continue
        check_backup_contents(read_backup(path), path)  # a backup-* folder is always complete and right
    for path in root.iterdir():
        if path.is_dir():
            continue
        if path.name != "model.safetensors":
            # Ours (atomic_path) or safetensors' own (it writes `.tmpXXXXXX` and renames it over its target).
            ours = path.name.startswith(".model.safetensors.") and path.name.endswith(".tmp")
            assert ours or path.name.startswith(".tmp"), path
            leftovers += 1
            continue
        with safe_open(str(path), framework="pt") as file:
            iteration = float(file.metadata()["iteration"])
        tensors = load_file(path)
        assert len(tensors) == TENSORS and all(
            t.numel() == NUMEL and bool((t == iteration).all()) for t in tensors.values()
        )
    folder, contents = newest_usable_backup(root / "backups", check_backup_contents)
    assert folder == backup_folders(root / "backups")[0]
    return leftovers, contents.state["iteration"]


def test_sigkill_while_writing_leaves_only_complete_files_or_ignored_temps(tmp_path):
    rng = random.Random(1234)
    iteration, leftovers_seen = 0, 0
    for _ in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(iteration)], stdout=subprocess.PIPE, text=True
        )
        with reaped(child):
            child.stdout.readline()  # one complete backup and save exist from now on
            # Random moments, mostly inside the next write (one write pair takes tenths of a second).
            subprocess.run(["sleep", f"{rng.uniform(0.0, 0.4):.3f}"], check=True)
            sigkill(child)
        leftovers, iteration = check_everything_on_disk(tmp_path)
        leftovers_seen += leftovers
        if leftovers_seen >= 2 and _ >= 3:
            break
    assert leftovers_seen, "no kill landed inside a write; the test proved nothing"
    remove_stale_temp_folders(tmp_path / "backups")  # what a resuming trainer does first
    assert not any(p.name.startswith(TEMP_FOLDER_PREFIX) for p in (tmp_path / "backups").iterdir())
    assert torch.equal(
        read_backup(backup_folders(tmp_path / "backups")[0]).tensors["rng"]["g"], torch.full((5,), float(iteration))
    )
