"""The Data tab's preview: after a scan, a few frames of the first clips of the first concept with their
captions, and the skip report (which files would be skipped and why), from the data pipeline's own
collection and probing (modules/data), so what is shown is what training will use.
"""

from __future__ import annotations

from pathlib import Path

import customtkinter as ctk
from PIL import Image

from modules.ui.run_process import REPO

CLIPS_SHOWN = 3
THUMB = 80


def scan_concepts(concepts: list[dict]) -> tuple[list[tuple[Path, str, Image.Image | None]], list[str]]:
    """(path, caption, first frame) of the first concept's first clips, and one line per skipped file."""
    from modules.data.flow.report import DataReport
    from modules.data.media.media_io import MediaError, probe, read_frames
    from modules.data.sources.concepts import Concept, DataError, collect_media

    shown, skipped = [], []
    for index, values in enumerate(concepts):
        report = DataReport()
        folder = Path(values.get("path") or "")
        folder = folder if folder.is_absolute() else REPO / folder
        fields = {k: v for k, v in values.items() if k in Concept.__dataclass_fields__ and k != "path"}
        try:
            items = collect_media(Concept(path=folder, **fields), report)
        except DataError as error:
            skipped.append(f"concept {index}: {error}")
            continue
        for item in items:
            try:
                info = probe(item.path)
            except MediaError as error:
                report.skip(item.path, "unreadable media", str(error))
                continue
            if index == 0 and len(shown) < CLIPS_SHOWN:
                frame = read_frames(item.path, [info.frame_count // 2 if not info.is_image else 0])[0]
                shown.append((item.path, item.caption, Image.fromarray(frame)))
        skipped += [f"{s.path.name}: {s.category} ({s.reason})" for s in report.skipped]
        skipped += report.notes
    return shown, skipped


class DataPreview(ctk.CTkFrame):
    def __init__(self, parent, form, background):
        super().__init__(parent)
        self.form = form
        self.background = background
        top = ctk.CTkFrame(self, fg_color="transparent")
        top.pack(fill="x", padx=6, pady=4)
        ctk.CTkLabel(top, text="Preview", font=ctk.CTkFont(weight="bold")).pack(side="left")
        self.scan_button = ctk.CTkButton(top, text="Scan concepts", width=120, command=self.scan)
        self.scan_button.pack(side="right")
        self.clips = ctk.CTkFrame(self, fg_color="transparent")
        self.clips.pack(fill="x", padx=6)
        self.report_label = ctk.CTkLabel(self, text="", anchor="w", justify="left", wraplength=640)
        self.report_label.pack(fill="x", padx=6, pady=(0, 6))
        self.shown: list[tuple[Path, str]] = []
        self.scanned = False
        self.skipped: list[str] = []

    def scan(self) -> None:
        """Collect and probe the concepts in the background worker (media decoding is slow)."""
        concepts = self.form.values().get("data", {}).get("concepts", [])
        self.scan_button.configure(state="disabled", text="Scanning...")
        self.scanned = False
        self.background.submit("scan", "scanning concepts", self._show, scan_concepts, concepts)

    def _show(self, result) -> None:
        self.scan_button.configure(state="normal", text="Scan concepts")
        self.scanned = True
        if isinstance(result, BaseException):
            self.report_label.configure(text=f"scan failed: {type(result).__name__}: {result}")
            return
        shown, self.skipped = result
        for child in self.clips.winfo_children():
            child.destroy()
        self.shown = [(path, caption) for path, caption, _ in shown]
        for column, (path, caption, image) in enumerate(shown):
            scale = THUMB / max(image.size)
            picture = ctk.CTkImage(light_image=image, size=(round(image.width * scale), round(image.height * scale)))
            ctk.CTkLabel(self.clips, text="", image=picture).grid(row=0, column=column, padx=4)
            text = f"{path.name}\n{caption[:60]}"
            ctk.CTkLabel(self.clips, text=text, wraplength=180, justify="left").grid(row=1, column=column, padx=4)
        lines = self.skipped or ["nothing would be skipped"]
        self.report_label.configure(text="Skip report:\n" + "\n".join(lines[:20]))
