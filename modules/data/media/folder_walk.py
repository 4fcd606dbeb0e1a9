"""Listing a concept folder's media files, following folder links once and reporting what cannot be followed.

Python's glob neither follows linked folders under "**" nor reports a link that points back into its own
tree or a link to nothing: those files vanished silently. Here a linked folder is followed (data sets are
often assembled from links), each real folder is read once, and a link loop or a broken link to a media
file is skipped with a counted warning naming the link.

Files whose extension is not a media extension are used when their content is media (media_io.sniff_media);
every other file, and a subfolder that is not read, is an unused file: `unused_files` names each with the
reason, so a concept folder never loses a file silently, whatever else it holds.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from modules.data.flow.report import DataReport
from modules.data.media.media_io import CAPTION_EXTENSION, is_media, sniff_media

NOT_MEDIA = "not an image or video: neither Pillow nor FFmpeg reads its content"
SUBFOLDER_NOT_READ = "a subfolder: read only with include_subdirectories: true"


def media_files(folder: Path, recursive: bool, report: DataReport, others: list[Path] | None = None) -> list[Path]:
    """Every media file in `folder` (and below it when `recursive`), sorted by path.

    `others`, when given, receives every other file (and, when not recursive, every subfolder) found.
    """
    found: list[Path] = []
    visited: set[str] = set()

    def visit(directory: Path, chain: tuple[str, ...]) -> None:
        real = os.path.realpath(directory)
        if real in chain:
            reason = f"links back to {real}, a folder it is inside; not followed (remove the link)"
            report.skip(directory, "symlink loop", reason)
            return
        if real in visited:
            report.note(f"{directory}: the same folder as {real}, already read; not read twice")
            return
        visited.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            report.skip(directory, "unreadable folder", error.strerror or str(error))
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()  # both follow links
                if entry.is_symlink():
                    os.stat(path)  # a looped or dangling link raises here
            except OSError as error:
                _report_bad_link(path, error, recursive, report)
                continue
            if is_dir and recursive:
                visit(path, (*chain, real))
            elif is_file and (is_media(path) or sniff_media(path)):
                found.append(path)
            elif others is not None and (is_file or is_dir):
                others.append(path)

    visit(folder, ())
    return sorted(found)


def _report_bad_link(path: Path, error: OSError, recursive: bool, report: DataReport) -> None:
    if error.errno == errno.ELOOP:
        if recursive or is_media(path):  # a looped link could be a folder or a media file: say so
            report.skip(path, "symlink loop", "the link resolves to itself through a loop of links (remove the link)")
        else:
            report.not_used(path, "a link in a loop of links")
    elif is_media(path):
        report.skip(path, "broken symlink", f"links to {os.readlink(path)}, which does not exist")
    else:  # not media by its name, and nothing to read its content from: still named
        report.not_used(path, f"a broken link to {os.readlink(path)}")


def unused_files(others: list[Path], media: list[Path], captions_from_files: bool) -> list[tuple[Path, str]]:
    """(file, why it is not used) for each non-media file of a concept folder; a used caption file is not listed."""
    stems = {path.with_suffix("") for path in media}
    unused = []
    for path in sorted(others):
        if path.is_dir():
            unused.append((path, SUBFOLDER_NOT_READ))
        elif path.suffix.lower() != CAPTION_EXTENSION:
            unused.append((path, NOT_MEDIA))
        elif path.with_suffix("") not in stems:
            unused.append((path, "a caption file with no image or video of the same name"))
        elif not captions_from_files:
            unused.append((path, "a caption file, not read: the concept's caption_source is not 'txt'"))
    return unused
