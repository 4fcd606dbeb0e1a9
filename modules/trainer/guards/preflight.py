"""Checks that need no model, run before it loads: a run that cannot write its results or read its data
should say so in seconds, not after loading 28 GB and training all night.

- first, the plugin's setup checks the settings it can judge from the config and file headers alone
  (BaseModelSetup.check_config: for WAN memory.blocks_to_swap against the block count; for a WAN LoRA the layer
  filter against the model's layer names and lora.continue_from's header), and a method whose weights are
  sharded over several processes refuses what a sharded run cannot serve (distributed.check_sharded_config);
  nothing is created before these pass;
- every folder the run writes to (workspace, output file's folder, cache, backups, saves) can be created
  and written: a read-only folder, a path under a regular file or a full permission denial is named with
  its setting now instead of failing at the final save;
- the plugin's data loader checks its sources (BaseDataLoader.check_sources; for WAN: every concept folder
  exists and, with on_missing_caption=error, every media file has its caption; it only lists files and reads
  captions).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from modules.config.validation import ConfigError
from modules.trainer.distributed import check_sharded_config


def check_before_loading(config, data_loader=None, setup_class=None, world_size: int = 1) -> None:
    if setup_class is not None:  # the training method's settings, from file headers at most; creates nothing
        setup_class.check_config(config)
        if world_size > 1 and setup_class.shards_weights:
            check_sharded_config(config)
    for setting, folder in output_folders(config):
        check_writable_folder(folder, setting)
    output_path = Path(config.output.output_path) if config.output.output_path else None
    if output_path is not None and output_path.is_dir():
        raise ConfigError(
            f"output.output_path: {output_path} is a folder; it must be the path of the file to write, "
            f"e.g. {output_path / 'lora.safetensors'}"
        )
    if data_loader is not None:
        data_loader.check_sources(config)


def output_folders(config) -> list[tuple[str, Path]]:
    """(setting, folder) for every folder the run writes into."""
    workspace = Path(config.output.workspace_dir)
    output = Path(config.output.output_path) if config.output.output_path else workspace / "output" / "x"
    folders = [
        ("output.workspace_dir", workspace),
        ("output.output_path" if config.output.output_path else "output.workspace_dir", output.parent),
        ("data.cache_dir" if config.data.cache_dir else "output.workspace_dir", _cache_dir(config)),
        ("output.workspace_dir", workspace / "backups"),
    ]
    seen, unique = set(), []
    for setting, folder in folders:
        if folder not in seen:
            seen.add(folder)
            unique.append((setting, folder))
    return unique


def _cache_dir(config) -> Path:
    return Path(config.data.cache_dir) if config.data.cache_dir else Path(config.output.workspace_dir) / "cache"


def check_writable_folder(folder: Path, setting: str) -> None:
    """Create `folder` if needed and write a probe file in it; ConfigError naming the setting when impossible."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{setting}: {folder} cannot be created because {existing} is a file, not a folder. "
            f"Fix: set {setting} to a path that is not inside a file."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"{setting}: cannot create {folder} ({error.strerror or error}). Fix: set {setting} to a folder you can "
            "write, or fix the permissions of its parent."
        ) from None
    # os.access is not enough: root ignores modes, and read-only mounts or immutable folders only show on write.
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-", delete=True) as probe:
            probe.write(b"ok")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise ConfigError(
            f"{setting}: {folder} is not writable ({error.strerror or error}). Nothing was trained yet. "
            f"Fix: make {folder} writable, or set {setting} to a folder you can write."
        ) from None
