"""The concept editor on the Data tab: each `data.concepts` entry as a card.

A card is the list editor's item form (every concept setting, Enabled right after the folder, so edits, validation
and Start work as for any field) under a head that shows: an animated preview of the first trained window, how many
files train and how long they play, the files skipped and why, and a button to the per-file view
(concept_files.py). The numbers are the dataset check's (`scripts/dataset.py check`), computed with the run's
settings in the background worker (concept_inspect.py) after each change of the data or model settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import customtkinter as ctk
from PIL import Image

from modules.ui.concept_inspect import PREVIEW_SIDE, inspect_concepts
from modules.ui.field_specs import FieldSpec
from modules.ui.field_widgets import ERROR_COLOR
from modules.ui.list_editor import ListEditor

FRAME_MS = 180  # preview animation: one frame per FRAME_MS
SKIPS_SHOWN = 6
REASON_CHARS = 90  # a skip reason on the card is cut here; the per-file view has it whole
MUTED = ("gray45", "gray60")
TEXT = ("gray10", "gray90")  # customtkinter's default label colours


def concept_summary(concept: dict) -> dict:
    """Counts of one concept of the check's report: files trained and skipped, windows, seconds of video."""
    videos = [f for f in concept["files"] if f["shown_frames"] > 1 and f["fps"]]
    return {
        "files": len(concept["files"]),
        "skipped": len({s["path"] for s in concept["skipped"]}),
        "windows": concept["windows"],
        "samples": concept["samples_per_epoch"],
        "seconds": sum(f["shown_frames"] / f["fps"] for f in videos),
        "images": len(concept["files"]) - len(videos),
    }


def summary_text(summary: dict) -> str:
    text = (
        f"{summary['files']} file(s) train: {summary['windows']} window(s), {summary['samples']} sample(s) an epoch\n"
        f"{summary['seconds']:.1f} s of video"
    )
    if summary["images"]:
        text += f", {summary['images']} image(s)"
    return text + (f"; {summary['skipped']} skipped" if summary["skipped"] else "")


def skip_lines(concept: dict) -> list[str]:
    lines = [f"{s['path'].rsplit('/', 1)[-1]}: {s['category']} ({_cut(s['reason'])})" for s in concept["skipped"]]
    lines += [f"note: {note}" for note in concept["notes"]]
    return lines


def preview_size(size: tuple[int, int]) -> tuple[int, int]:
    """Shown with its longer side PREVIEW_SIDE pixels, a small clip enlarged too, its aspect kept."""
    scale = PREVIEW_SIDE / max(size)
    return round(size[0] * scale), round(size[1] * scale)


def _cut(text: str) -> str:
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


class ConceptCard(ctk.CTkFrame):
    """The head of one concept's card, above its settings."""

    def __init__(self, parent, open_files: Callable[[], None]):
        super().__init__(parent)
        self.grid_columnconfigure(1, weight=1)
        self.preview = ctk.CTkLabel(self, text="", width=120, height=80)
        self.preview.grid(row=0, column=0, rowspan=2, padx=6, pady=6)
        self.stats = ctk.CTkLabel(self, text="not checked yet", justify="left", anchor="w", wraplength=270)
        self.stats.grid(row=0, column=1, sticky="ew", padx=6, pady=(6, 0))
        self.skips = ctk.CTkLabel(self, text="", justify="left", anchor="w", wraplength=270, text_color=ERROR_COLOR)
        self.skips.grid(row=1, column=1, sticky="new", padx=6)
        self.files_button = ctk.CTkButton(self, text="Files and captions...", width=150, command=open_files)
        self.files_button.grid(row=0, column=2, padx=6, pady=6, sticky="ne")
        self.blank: ctk.CTkImage | None = None
        self.frames: list[ctk.CTkImage] = []
        self.frame_index = 0
        self.animation = None

    def show(self, text: str, skips: list[str], images: list, enabled: bool) -> None:
        shown_text = text if enabled else "off: not trained\n" + text
        self.stats.configure(text=shown_text, text_color=TEXT if enabled else MUTED)
        more = len(skips) - SKIPS_SHOWN
        shown = skips[:SKIPS_SHOWN] + ([f"... and {more} more (Files and captions...)"] if more > 0 else [])
        self.skips.configure(text="skipped: " + "\n".join(shown) if shown else "")
        frames = [ctk.CTkImage(light_image=image, size=preview_size(image.size)) for image in images]
        # The label moves to other images before the old ones are dropped: Tk refuses any later configure of a
        # label whose image was deleted under it ("image pyimage7 doesn't exist"), and customtkinter's image=None
        # leaves the old one set, hence a blank image rather than none.
        if frames or self.frames:  # an image is made only when one is shown (customtkinter makes it on Tk's first root)
            self.preview.configure(image=frames[0] if frames else self._blank())
        self.preview.configure(text="" if frames else "no preview")
        self.frames, self.frame_index = frames, 0
        if self.frames and self.animation is None:
            self.animation = self.after(FRAME_MS, self._next_frame)

    def _blank(self) -> ctk.CTkImage:
        if self.blank is None:
            self.blank = ctk.CTkImage(light_image=Image.new("RGBA", (1, 1), (0, 0, 0, 0)), size=(1, 1))
        return self.blank

    def _next_frame(self) -> None:
        self.animation = None
        if not self.frames or not self.winfo_exists():
            return
        self.frame_index = (self.frame_index + 1) % len(self.frames)
        self.preview.configure(image=self.frames[self.frame_index])
        self.animation = self.after(FRAME_MS, self._next_frame)

    def destroy(self) -> None:
        if self.animation is not None:
            self.after_cancel(self.animation)
            self.animation = None
        super().destroy()


class ConceptEditor(ListEditor):
    """data.concepts as cards: the list editor's item forms, each under a ConceptCard."""

    def __init__(self, parent, spec: FieldSpec, on_change: Callable[[], None], background):
        super().__init__(parent, spec, on_change)
        self.background = background
        self.title.configure(text="Concepts")
        self.check_button = ctk.CTkButton(
            self.add_button.master, text="Check again", width=100, command=lambda: self.inspect(self.last_values, True)
        )
        self.check_button.pack(side="right", padx=6)
        self.status = ctk.CTkLabel(self.frame, text="", anchor="w", justify="left", wraplength=700)
        self.status.pack(fill="x", padx=6, before=self.items[0][0] if self.items else None)
        self.cards: list[ConceptCard] = []
        self.last_values: dict = {}
        self.last_key: str | None = None
        self.result: dict | None = None  # the last inspection: {"report", "previews"}
        self.checking = False
        self.files_view = None

    # ---- cards --------------------------------------------------------------------------------------
    def add_item(self, values: dict) -> None:
        super().add_item(values)
        box, _ = self.items[-1]
        index = len(self.items) - 1
        card = ConceptCard(self.frame, lambda: self.open_files(index))
        card.pack(fill="x", padx=6, pady=(8, 0), before=box)  # the card's head: above the concept's settings
        self.cards.append(card)
        self._show_cards()

    def set(self, values: list[dict]) -> None:
        super().set(values)
        while len(self.cards) > len(self.items):  # the list editor removed the last item forms
            self.cards.pop().destroy()

    def enabled(self, index: int) -> bool:
        widget = self.widgets().get(f"{self.spec.name}.{index}.enabled")
        return True if widget is None else bool(widget.get())

    # ---- checking -----------------------------------------------------------------------------------
    def inspect(self, values: dict, force: bool = False) -> None:
        """Check the concepts with `values` (the form's, valid) unless the data and model settings are unchanged."""
        if not values:  # "Check again" before the settings were ever valid
            self.not_checkable("the settings have problems (beside Start)")
            return
        self.last_values = values
        key = json.dumps({"data": values.get("data"), "model": values.get("model")}, sort_keys=True, default=str)
        if key == self.last_key and not force:
            self._show_cards()  # an Enabled switch may have changed
            return
        self.last_key = key
        self.checking = True
        self.status.configure(text="checking the concepts...", text_color=TEXT)
        self.background.submit("concepts", "checking concepts", self._inspected, inspect_concepts, values)

    def not_checkable(self, reason: str) -> None:
        """The settings have problems: the check would refuse them too."""
        self.last_key = None
        self.status.configure(text=f"concepts not checked: {reason}", text_color=MUTED)

    def _inspected(self, result) -> None:
        self.checking = False
        if isinstance(result, BaseException):
            self.result = None
            self.status.configure(text=f"concept check failed: {result}", text_color=ERROR_COLOR)
        else:
            self.result = result
            totals = result["report"]["totals"]
            self.status.configure(
                text=f"{totals['files_trained']} file(s) train, {totals['files_skipped']} skipped "
                f"(the same check as scripts/dataset.py check)",
                text_color=TEXT,
            )
        self._show_cards()
        if self.files_view is not None and self.files_view.winfo_exists():
            self.files_view.refresh()

    def concept_report(self, index: int) -> dict | None:
        if self.result is None:
            return None
        label = f"data.concepts[{index}]"
        return next((c for c in self.result["report"]["concepts"] if c["concept"] == label), None)

    def _show_cards(self) -> None:
        for index, card in enumerate(self.cards):
            enabled = self.enabled(index)
            concept = self.concept_report(index)
            card.files_button.configure(state="normal" if concept is not None else "disabled")
            if concept is None:
                text = "checking..." if self.checking else ("off: not checked" if not enabled else "not checked")
                card.show(text, [], [], True)
                continue
            images = self.result["previews"].get(index, [])
            card.show(summary_text(concept_summary(concept)), skip_lines(concept), images, enabled)

    # ---- per-file view ------------------------------------------------------------------------------
    def open_files(self, index: int):
        from modules.ui.concept_files import ConceptFilesView

        if self.files_view is not None and self.files_view.winfo_exists():
            self.files_view.destroy()
        self.files_view = ConceptFilesView(self.frame, self, index)
        return self.files_view
