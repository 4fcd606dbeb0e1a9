"""DataReport: every file the pipeline could not use, with the reason, counted and shown once at the end.

A broken video must never stop a run nor vanish silently: it is skipped, logged with its path, and the
summary says how many were skipped and why. Files used after a correction (rotated by their display
matrix, stretched by their pixel aspect, planned on timestamps, ...) are listed with what was done.

`record()` is the same report as plain data (lists and dicts of strings), per concept and per file, for
the window's event stream, diagnostics.json and the dataset check (modules/data/media/corrections.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("wan_trainer.data")


@dataclass
class SkippedFile:
    path: Path
    category: str  # short and stable: "unreadable media", "missing caption", "too short", ...
    reason: str
    concept: Path | None = None  # the concept folder being collected when it was found, if any


@dataclass
class DataReport:
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    corrected: dict[Path, list[str]] = field(default_factory=dict)
    empty_folders: list[str] = field(default_factory=list)  # messages, also in the summary: "no usable items" says why
    unused: list[SkippedFile] = field(default_factory=list)  # files in a concept folder that are not media at all
    concepts: dict[Path, list[Path]] = field(default_factory=dict)  # concept folder -> its media files, in order
    _collecting: Path | None = field(default=None, repr=False)

    @contextmanager
    def collecting(self, concept: Path) -> Iterator[None]:
        """What is reported while a concept folder is listed belongs to that concept."""
        self.concepts.setdefault(Path(concept), [])
        self._collecting = Path(concept)
        try:
            yield
        finally:
            self._collecting = None

    def collected(self, concept: Path, media: list[Path]) -> None:
        """The concept's media files, so later stages' corrections and skips are filed under it."""
        known = self.concepts.setdefault(Path(concept), [])
        known.extend(p for p in media if p not in known)

    def skip(self, path: Path, category: str, reason: str) -> None:
        self.skipped.append(SkippedFile(Path(path), category, reason, self._collecting))
        log.warning("skipped %s (%s): %s", path, category, reason)

    def not_used(self, path: Path, reason: str) -> None:
        """A file in a concept folder that is not media (or a caption without media): named, never silent."""
        self.unused.append(SkippedFile(Path(path), "unused file", reason, self._collecting))
        log.info("not used: %s (%s)", path, reason)

    def unused_summary(self) -> str:
        if not self.unused:
            return ""
        lines = [f"{s.path}: {s.reason}" for s in self.unused]
        return f"{len(self.unused)} file(s) in concept folders not used:\n  " + "\n  ".join(lines)

    def note(self, message: str) -> None:
        self.notes.append(message)
        log.info(message)

    def empty_folder(self, message: str) -> None:
        self.empty_folders.append(message)
        self.note(message)

    def correct(self, path: Path, what: str) -> None:
        """`path` is used as a viewer sees it after `what` ("rotated 90", "SAR 32:27 -> 853x480", ...)."""
        self.corrected.setdefault(Path(path), []).append(what)
        log.info("%s: %s", path, what)

    def corrections_summary(self) -> str:
        if not self.corrected:
            return ""
        lines = [f"{path}: {'; '.join(what)}" for path, what in self.corrected.items()]
        return f"{len(self.corrected)} file(s) used as shown after a correction:\n  " + "\n  ".join(lines)

    def skipped_count(self, category: str | None = None) -> int:
        return sum(1 for s in self.skipped if category is None or s.category == category)

    def skipped_paths(self, category: str | None = None) -> list[Path]:
        return [s.path for s in self.skipped if category is None or s.category == category]

    def summary(self) -> str:
        corrections = f"\n{self.corrections_summary()}" if self.corrected else ""
        corrections += f"\n{self.unused_summary()}" if self.unused else ""
        corrections += "".join(f"\n{message}" for message in self.empty_folders)
        if not self.skipped:
            return "no files were skipped" + corrections
        counts = Counter(s.category for s in self.skipped)
        parts = []
        for category, count in counts.most_common():
            examples = [str(s.path) for s in self.skipped if s.category == category][:3]
            more = f" and {count - len(examples)} more" if count > len(examples) else ""
            parts.append(f"{count} {category} ({', '.join(examples)}{more})")
        return f"skipped {len(self.skipped)} file(s): " + "; ".join(parts) + corrections

    def log_summary(self) -> None:
        """One log entry at the end of data preparation: a warning when files were skipped, else INFO."""
        if self.skipped:
            log.warning(self.summary())
        else:
            text = "\n".join(part for part in (self.corrections_summary(), self.unused_summary()) if part)
            if text:
                log.info(text)

    def record(self) -> dict:
        """The report as plain data: per concept, its corrected files (with what was done), unused and skipped files.

        {"concepts": [{"path", "files": [{"path", "corrections": [...]}], "unused": [{"path", "reason"}],
        "skipped": [{"path", "category", "reason"}]}], "other": {the same three lists for files of no concept}}.
        A file of two concepts is listed under both. Paths are strings; the order is the order found.
        """
        owner: dict[Path, list[Path]] = {}
        for concept, media in self.concepts.items():
            for path in media:
                owner.setdefault(path, []).append(concept)

        def concepts_of(path: Path, found_in: Path | None) -> list[Path | None]:
            return [found_in] if found_in is not None else owner.get(path, [None])

        groups: dict[Path | None, dict[str, list]] = {
            c: {"files": [], "unused": [], "skipped": []} for c in [*self.concepts, None]
        }
        for path, what in self.corrected.items():
            for concept in concepts_of(path, None):
                groups[concept]["files"].append({"path": str(path), "corrections": list(what)})
        for entry in self.unused:
            for concept in concepts_of(entry.path, entry.concept):
                groups[concept]["unused"].append({"path": str(entry.path), "reason": entry.reason})
        for entry in self.skipped:
            for concept in concepts_of(entry.path, entry.concept):
                groups[concept]["skipped"].append(
                    {"path": str(entry.path), "category": entry.category, "reason": entry.reason}
                )
        other = groups.pop(None)
        return {"concepts": [{"path": str(c), **lists} for c, lists in groups.items()], "other": other}
