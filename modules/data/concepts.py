"""Concepts: folders of media with their captions, collected into a flat list of training items."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modules.data.media_io import is_media
from modules.data.report import DataReport


class DataError(ValueError):
    """The training data cannot be used as configured; the message names the file or folder and the fix."""


@dataclass(frozen=True)
class Concept:
    path: Path
    repeats: int = 1
    caption_source: str = "txt"  # a .txt beside the media, the file name, or caption_text
    caption_text: str = ""
    on_missing_caption: str = "skip"
    include_subdirectories: bool = False


@dataclass(frozen=True)
class MediaItem:
    path: Path
    caption: str
    repeats: int


def collect_media(concept: Concept, report: DataReport) -> list[MediaItem]:
    """Every media file of a concept with its caption, sorted by path so runs are reproducible."""
    folder = Path(concept.path)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: the concept folder does not exist. Fix: point data.concepts[].path at a folder of "
            f"videos/images."
        )
    pattern = "**/*" if concept.include_subdirectories else "*"
    items = []
    for path in sorted(p for p in folder.glob(pattern) if p.is_file() and is_media(p)):
        caption = caption_for(path, concept)
        if caption is None:
            if concept.on_missing_caption == "error":
                raise DataError(
                    f"{path}: no caption ({path.with_suffix('.txt').name} is missing or empty). Fix: write the caption "
                    "file, or set on_missing_caption to 'skip' or 'use_text' for this concept."
                )
            if concept.on_missing_caption == "skip" or not concept.caption_text.strip():
                report.skip(path, "missing caption", f"{path.with_suffix('.txt').name} is missing or empty")
                continue
            caption = concept.caption_text.strip()
        items.append(MediaItem(path, caption, concept.repeats))
    if not items and not report.skipped:
        report.note(f"{folder}: no videos or images found")
    return items


def caption_for(path: Path, concept: Concept) -> str | None:
    """The caption of one media file, or None when its source has none."""
    if concept.caption_source == "text":
        return concept.caption_text.strip() or None
    if concept.caption_source == "filename":
        return path.stem.replace("_", " ").strip() or None
    caption_file = path.with_suffix(".txt")
    if not caption_file.is_file():
        return None
    text = caption_file.read_text(encoding="utf-8", errors="replace").strip()
    return text or None
