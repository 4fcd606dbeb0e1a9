"""Concepts: folders of media with their captions, collected into a flat list of training items."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modules.data.flow.report import DataReport
from modules.data.media.folder_walk import media_files, unused_files
from modules.data.media.media_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from modules.util.errors import UserError


class DataError(UserError, ValueError):
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


# Masks for masked training lie beside their media as `<stem>-masklabel.<ext>` (modules/data/flow/masks.py); they are
# never training items themselves.
MASK_SUFFIX = "-masklabel"


def is_mask_file(path: Path) -> bool:
    return path.stem.endswith(MASK_SUFFIX)


def collect_media(concept: Concept, report: DataReport) -> list[MediaItem]:
    """Every media file of a concept with its caption, sorted by path so runs are reproducible."""
    folder = Path(concept.path)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: the concept folder does not exist. "
            "Fix: point data.concepts[].path at a folder of videos/images."
        )
    with report.collecting(folder):  # what is skipped or unused here is filed under this concept
        return _collect(folder, concept, report)


def _collect(folder: Path, concept: Concept, report: DataReport) -> list[MediaItem]:
    items = []
    skipped_before = len(report.skipped)
    others: list[Path] = []
    # Masks (masked training) lie beside their media; they are never training items themselves.
    media = [p for p in media_files(folder, concept.include_subdirectories, report, others) if not is_mask_file(p)]
    report.collected(folder, media)
    for path, reason in unused_files(others, media, concept.caption_source == "txt"):  # named, never silent
        report.not_used(path, reason)
    for path in media:
        try:
            caption = caption_for(path, concept)
        except UnreadableCaption as error:
            if concept.on_missing_caption == "error":
                raise DataError(f"{path}: {error}. Fix: save the caption as UTF-8 text.") from None
            report.skip(path, "unreadable caption", str(error))
            continue
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
    if not items and len(report.skipped) == skipped_before:
        accepted = " ".join(sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS))
        has_subfolders = not concept.include_subdirectories and any(p.is_dir() for p in folder.iterdir())
        subfolders = " (its subfolders are read only with include_subdirectories: true)" if has_subfolders else ""
        report.empty_folder(f"{folder}: no videos or images found{subfolders}; accepted extensions: {accepted}")
    return items


class UnreadableCaption(ValueError):
    """A caption file exists but is not text we can train on (not UTF-8, unreadable)."""


def caption_file_of(path: Path) -> Path:
    """The .txt a media file's caption is read from (caption_source 'txt'): clip.mp4 -> clip.txt."""
    return path.with_suffix(".txt")


def caption_for(path: Path, concept: Concept) -> str | None:
    """The caption of one media file, or None when its source has none."""
    if concept.caption_source == "text":
        return concept.caption_text.strip() or None
    if concept.caption_source == "filename":
        return path.stem.replace("_", " ").strip() or None
    caption_file = caption_file_of(path)
    if not caption_file.is_file():
        return None
    try:
        data = caption_file.read_bytes()
    except OSError as error:
        raise UnreadableCaption(f"{caption_file.name} cannot be read ({error.strerror})") from None
    try:
        # utf-8-sig: a byte-order mark (Windows Notepad) is not part of the caption.
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as error:
        # Replacement characters would train the text encoder on garbage; the file is named instead.
        raise UnreadableCaption(
            f"{caption_file.name} is not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from None
    return text or None
