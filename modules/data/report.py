"""DataReport: every file the pipeline could not use, with the reason, counted and shown once at the end.

A broken video must never stop a run nor vanish silently: it is skipped, logged with its path, and the
summary says how many were skipped and why.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("wan_trainer.data")


@dataclass
class SkippedFile:
    path: Path
    category: str  # short and stable: "unreadable media", "missing caption", "too short", ...
    reason: str


@dataclass
class DataReport:
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, path: Path, category: str, reason: str) -> None:
        self.skipped.append(SkippedFile(Path(path), category, reason))
        log.warning("skipped %s (%s): %s", path, category, reason)

    def note(self, message: str) -> None:
        self.notes.append(message)
        log.info(message)

    def skipped_count(self, category: str | None = None) -> int:
        return sum(1 for s in self.skipped if category is None or s.category == category)

    def skipped_paths(self, category: str | None = None) -> list[Path]:
        return [s.path for s in self.skipped if category is None or s.category == category]

    def summary(self) -> str:
        if not self.skipped:
            return "no files were skipped"
        counts = Counter(s.category for s in self.skipped)
        parts = []
        for category, count in counts.most_common():
            examples = [str(s.path) for s in self.skipped if s.category == category][:3]
            more = f" and {count - len(examples)} more" if count > len(examples) else ""
            parts.append(f"{count} {category} ({', '.join(examples)}{more})")
        return f"skipped {len(self.skipped)} file(s): " + "; ".join(parts)
