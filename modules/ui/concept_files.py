"""The per-file view of one concept (opened from its card): every file of the dataset check's report with what it
trains as (bucket and frame windows), or why it is skipped, and its caption to read and edit.

A caption is saved to the file the data pipeline reads (`clip.mp4` -> `clip.txt`,
modules/data/sources/concepts.caption_file_of), atomically, by the background worker; the concepts are then checked
again, so the card and this view show what the next run will train. Captions are editable when the concept reads
them from .txt files (caption_source 'txt'); a skipped file with a missing caption can be given one here.
"""

from __future__ import annotations

from pathlib import Path

import customtkinter as ctk

from modules.ui.concept_inspect import save_caption
from modules.ui.field_widgets import ERROR_COLOR

MUTED = ("gray45", "gray60")


def windows_text(entry: dict) -> str:
    """'trains as 2 window(s): 96x64x17 frames 0-16; 96x64x17 mirrored frames 0-16'."""
    parts = []
    for window in entry["windows"]:
        indices = window["source_indices"]
        mirrored = " mirrored" if window["flip"] else ""
        parts.append(f"{window['bucket']}{mirrored} from source frames {indices[0]}-{indices[-1]}")
    return f"trains as {len(parts)} window(s): " + "; ".join(parts)


def file_text(entry: dict) -> str:
    width, height = entry["size"]
    shown = f"{entry['shown_frames']} frames at {entry['fps']:g} fps" if entry["shown_frames"] > 1 else "image"
    lines = [f"{Path(entry['path']).name}: {shown}, {width}x{height}", windows_text(entry)]
    lines += [f"corrected: {what}" for what in entry["corrections"]]
    return "\n".join(lines)


class CaptionRow:
    """One file: what it trains as (or why it is skipped), its caption and Save."""

    def __init__(self, parent, view: ConceptFilesView, path: str, text: str, caption: str | None, locked: str | None):
        self.view, self.path = view, path
        self.frame = ctk.CTkFrame(parent)
        self.frame.pack(fill="x", padx=4, pady=3)
        self.info = ctk.CTkLabel(self.frame, text=text, anchor="w", justify="left", wraplength=640)
        self.info.pack(fill="x", padx=6, pady=(4, 0))
        self.caption = ctk.CTkTextbox(self.frame, height=56, wrap="word")
        self.caption.insert("1.0", caption or "")
        self.caption.pack(fill="x", padx=6, pady=2)
        bottom = ctk.CTkFrame(self.frame, fg_color="transparent")
        bottom.pack(fill="x", padx=6, pady=(0, 4))
        self.save_button = ctk.CTkButton(bottom, text="Save caption", width=110, command=self.save)
        self.save_button.pack(side="left")
        self.status = ctk.CTkLabel(bottom, text="", anchor="w", text_color=MUTED)
        self.status.pack(side="left", padx=8)
        if locked is not None:  # why this caption cannot be edited here
            self.caption.configure(state="disabled")
            self.save_button.configure(state="disabled")
            self.status.configure(text=locked)

    def text(self) -> str:
        return self.caption.get("1.0", "end").strip()

    def save(self) -> None:
        text = self.text()
        if not text:
            self.status.configure(text="empty: not saved (an empty caption counts as missing)", text_color=ERROR_COLOR)
            return
        self.save_button.configure(state="disabled")
        self.status.configure(text="saving...", text_color=MUTED)
        self.view.editor.background.submit(
            f"caption {self.path}", "saving a caption", self._saved, save_caption, self.path, text
        )

    def _saved(self, result) -> None:
        if not self.frame.winfo_exists():
            return
        self.save_button.configure(state="normal")
        if isinstance(result, BaseException):
            self.status.configure(text=f"not saved: {result}", text_color=ERROR_COLOR)
            return
        self.status.configure(text=f"saved {Path(result).name}", text_color=MUTED)
        self.view.saved.append(result)
        self.view.editor.inspect(self.view.editor.last_values, force=True)  # the card and this view follow


class ConceptFilesView(ctk.CTkToplevel):
    def __init__(self, parent, editor, index: int):
        super().__init__(parent)
        self.editor, self.index = editor, index
        self.title(f"data.concepts[{index}]: files and captions")
        self.geometry("760x620")
        self.header = ctk.CTkLabel(self, text="", anchor="w", justify="left", wraplength=720)
        self.header.pack(fill="x", padx=8, pady=6)
        self.body = ctk.CTkScrollableFrame(self)
        self.body.pack(fill="both", expand=True, padx=6, pady=(0, 6))
        self.rows: dict[str, CaptionRow] = {}
        self.saved: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        """Show the editor's latest check; a row being edited keeps its text (only its description follows)."""
        concept = self.editor.concept_report(self.index)
        if concept is None:
            self.header.configure(text="not checked yet (the card says why)")
            return
        self.header.configure(
            text=f"{concept['path']}: {len(concept['files'])} file(s) train, {len(concept['skipped'])} skipped"
        )
        source = concept["settings"]["caption_source"]
        not_txt = None if source == "txt" else f"caption_source is '{source}': captions are not read from .txt files"
        entries = [(f["path"], file_text(f), f["caption"], not_txt) for f in concept["files"]]
        for skip in concept["skipped"]:
            missing = skip["category"] in ("missing caption", "unreadable caption")
            text = f"{Path(skip['path']).name}: SKIPPED, {skip['category']}: {skip['reason']}"
            entries.append((skip["path"], text, None, not_txt if missing else "skipped for its media, not its caption"))
        for path, text, caption, locked in entries:
            row = self.rows.get(path)
            if row is None:
                self.rows[path] = CaptionRow(self.body, self, path, text, caption, locked)
            else:
                row.info.configure(text=text)
        for path in [p for p in self.rows if p not in {e[0] for e in entries}]:
            self.rows.pop(path).frame.destroy()
