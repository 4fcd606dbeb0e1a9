"""Model identity: the cache key of what a model was loaded from, one recipe for every kind of source.

sha256 over the variant and, for each source (a part folder or a single file, under its part name), each
file's name and size plus its content for small JSON configs, else its mtime. Cheap by design (stat calls
instead of hashing gigabytes), and a re-download or an edit changes it; a copy with kept mtimes does not.
A diffusers folder hashes exactly as before this recipe was shared; single-file sources hash differently from
the older single-file recipe, so caches built from single files rebuild once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from modules.wan.variants import WanVariant

# Small JSON files are hashed by content; larger files only by size and mtime.
_HASHED_JSON_MAX_BYTES = 1 << 20


def source_identity(variant: WanVariant, sources: list[tuple[str, Path]], model_index: Path | None = None) -> str:
    """`sources`: (part name, folder or file) in a fixed order; `model_index`: the diffusers folder's index file."""
    entries = [("model_index.json", model_index)] if model_index is not None and model_index.is_file() else []
    for part, path in sources:
        files = [path] if path.is_file() else sorted(f for f in path.iterdir() if f.is_file())
        entries += [(f"{part}/{file.name}", file) for file in files]
    digest = hashlib.sha256(f"wan-2.2:{variant.name}".encode())
    for name, file in entries:
        stat = file.stat()
        digest.update(f"\0{name}\0{stat.st_size}".encode())
        if file.suffix == ".json" and stat.st_size <= _HASHED_JSON_MAX_BYTES:
            digest.update(file.read_bytes())
        else:
            digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()
