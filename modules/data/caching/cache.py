"""The on-disk cache of encoded latents and captions: one safetensors file per entry, content-addressed.

An entry's key hashes everything that changes its tensors: the source file's identity (path, size,
modification time), the settings applied to it (frame indices, bucket, resize method) and the encoder's
identity. A changed source or setting therefore maps to a new key and only that entry is rebuilt; nothing
is ever deleted or overwritten in place, and entries are written atomically, so a crash or a broken file
never costs what is already cached. A corrupt entry is treated as missing and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from modules.data.caching.cache_check import entry_source, nonfinite_names, refuse_nonfinite
from modules.util.atomic import save_safetensors_atomic

log = logging.getLogger("wan_trainer.data")

# Bump when the way entries are computed changes, so old entries are not mistaken for new ones.
CACHE_FORMAT = 1


def file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_key(parts: dict) -> str:
    payload = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class DiskCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def has(self, kind: str, key: str) -> bool:
        return self.path_for(kind, key).is_file()

    def is_valid(self, kind: str, key: str) -> bool:
        """True when the entry exists, reads completely and holds only finite numbers (checked once per run,
        before training: a valid header over NaN tensors would otherwise train into a NaN loss)."""
        return self.get(kind, key) is not None

    def get(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        path = self.path_for(kind, key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            log.warning("cache entry %s is unreadable (%s); it will be rebuilt", path, error)
            return None
        bad = nonfinite_names(tensors)
        if bad:
            log.warning("cache entry %s (%s) holds NaN/Inf in %s; it will be rebuilt", path, entry_source(path), bad)
            return None
        return tensors

    def put(
        self, kind: str, key: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
    ) -> Path:
        path = self.path_for(kind, key)
        refuse_nonfinite(tensors, path, metadata)  # an encoder's NaN must fail here, not as a NaN loss later
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_safetensors_atomic({k: v.cpu() for k, v in tensors.items()}, path, metadata)
