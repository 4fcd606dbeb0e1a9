"""One widget per setting, chosen by the field's declared type: a check box for bool, a menu for choices,
an entry for numbers and text, an entry with the pickers of its declared path kind for paths, and a row per
item for lists of numbers or text. Each shows its help as a tooltip and, when the config refuses its value,
the config's own message under it (for a list item: beside that item).
"""

from __future__ import annotations

import json
import re
import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import customtkinter as ctk

from modules.ui.field_specs import FieldSpec
from modules.ui.tooltip import Tooltip

ERROR_COLOR = "#d9534f"


class FieldWidget:
    """A labelled input in rows `2*row` (label + input) and `2*row + 1` (the error, only when there is one)."""

    def __init__(self, parent, spec: FieldSpec, row: int, on_change: Callable[[], None]):
        self.spec, self.parent, self.row, self.on_change = spec, parent, row, on_change
        self.error_text: str | None = None
        self.shown = True
        self.error_label = None
        label = spec.label + (f" ({spec.unit})" if spec.unit else "") + (" *" if spec.required else "")
        self.label = ctk.CTkLabel(parent, text=label, anchor="w")
        self.label.grid(row=2 * row, column=0, sticky="w", padx=(8, 12), pady=2)
        self.input = self._make_input(parent)
        self.input.grid(row=2 * row, column=1, sticky="ew", padx=(0, 8), pady=2)
        hint = f"{spec.name}: {spec.help}" + _range_text(spec)
        Tooltip(self.label, hint)
        Tooltip(self.input, hint)

    # ---- per kind -----------------------------------------------------------------------------------
    def _make_input(self, parent):
        raise NotImplementedError

    def get(self) -> Any:
        raise NotImplementedError

    def set(self, value: Any) -> None:
        raise NotImplementedError

    # ---- shared -------------------------------------------------------------------------------------
    def mark(self, message: str | None) -> None:
        """Show the config's message under the field (None: clear it)."""
        self.error_text = message
        if message is None:
            if self.error_label is not None:
                self.error_label.grid_remove()
            self.label.configure(text_color=("gray10", "gray90"))
            return
        if self.error_label is None:
            self.error_label = ctk.CTkLabel(
                self.parent, text="", text_color=ERROR_COLOR, anchor="w", justify="left", wraplength=640
            )
        self.error_label.configure(text=message)
        self.error_label.grid(row=2 * self.row + 1, column=1, sticky="w", padx=(0, 8))
        self.label.configure(text_color=ERROR_COLOR)

    def show(self, shown: bool) -> None:
        """Lay the row out, or take it out (a setting that does not apply to the current choices)."""
        widgets = [self.label, self.input] + ([self.error_label] if self.error_text is not None else [])
        for widget in widgets:
            if shown:
                widget.grid()
            else:
                widget.grid_remove()

    def destroy(self) -> None:
        for widget in (self.label, self.input, self.error_label):
            if widget is not None:
                widget.destroy()


class CheckField(FieldWidget):
    def _make_input(self, parent):
        self.variable = tk.BooleanVar(value=bool(self.spec.default))
        self.variable.trace_add("write", lambda *_: self.on_change())
        return ctk.CTkCheckBox(parent, text="", variable=self.variable)

    def get(self) -> bool:
        return bool(self.variable.get())

    def set(self, value: Any) -> None:
        self.variable.set(bool(value))


class ChoiceField(FieldWidget):
    def _make_input(self, parent):
        self.options = [*(("",) if self.spec.optional else ()), *map(str, self.spec.choices)]
        self.variable = tk.StringVar(value=str(self.spec.default if self.spec.default is not None else ""))
        self.variable.trace_add("write", lambda *_: self.on_change())
        return ctk.CTkOptionMenu(parent, values=self.options, variable=self.variable, dynamic_resizing=False)

    def get(self) -> Any:
        text = self.variable.get()
        if text == "" and self.spec.optional:
            return None
        for choice in self.spec.choices:
            if str(choice) == text:
                return choice
        return text  # not a choice (from a file): the config's message will say which are allowed

    def set(self, value: Any) -> None:
        self.variable.set("" if value is None else str(value))


class EntryField(FieldWidget):
    """Numbers are read as JSON (1e-4, 3); text is taken as typed."""

    def _make_input(self, parent):
        self.variable = tk.StringVar(value=self._to_text(self.spec.default))
        self.variable.trace_add("write", lambda *_: self.on_change())
        return ctk.CTkEntry(parent, textvariable=self.variable)

    def _to_text(self, value: Any) -> str:
        if value is None:
            return ""
        if self.spec.kind is str:
            return value
        return json.dumps(value)

    def get(self) -> Any:
        text = self.variable.get()
        if self.spec.kind is str:
            return text
        if not text.strip():
            return None if self.spec.optional else ([] if self.spec.kind is list else text)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # kept as typed: the config's own message names the expected type

    def set(self, value: Any) -> None:
        self.variable.set(self._to_text(value))


# The picker buttons of each declared path kind (modules/config/fields.py PATH_KINDS): (text, dialog).
PICKERS = {
    "file": (("File...", "open"),),
    "folder": (("Folder...", "folder"),),
    "file_or_folder": (("File...", "open"), ("Folder...", "folder")),
    "save_file": (("Save as...", "save"),),
}


def add_pickers(frame, spec: FieldSpec, column: int, on_pick: Callable[[str], None]) -> dict[str, ctk.CTkButton]:
    """The buttons of `spec.path`'s kind from `column` on in `frame`; a chosen path goes to `on_pick`."""
    buttons = {}
    for offset, (text, dialog) in enumerate(PICKERS[spec.path]):
        button = ctk.CTkButton(frame, text=text, width=70, command=lambda d=dialog: _pick(d, spec, on_pick))
        button.grid(row=0, column=column + offset, padx=(4, 0))
        buttons[text] = button
    return buttons


def _pick(dialog: str, spec: FieldSpec, on_pick: Callable[[str], None]) -> None:
    from tkinter import filedialog

    types = list(spec.file_types) or [("All files", "*")]
    if dialog == "folder":
        chosen = filedialog.askdirectory(title=spec.label)
    elif dialog == "save":
        chosen = filedialog.asksaveasfilename(title=spec.label, filetypes=types)
    else:
        chosen = filedialog.askopenfilename(title=spec.label, filetypes=types)
    if chosen:
        on_pick(chosen)


class PathField(EntryField):
    """A text entry (a hub id or a typed path stays possible) with the pickers of the field's declared kind."""

    def _make_input(self, parent):
        frame = ctk.CTkFrame(parent, fg_color="transparent")
        frame.grid_columnconfigure(0, weight=1)
        self.entry = super()._make_input(frame)
        self.entry.grid(row=0, column=0, sticky="ew")
        self.buttons = add_pickers(frame, self.spec, 1, self.set)
        return frame


@dataclass
class ListRow:
    frame: ctk.CTkFrame
    variable: tk.StringVar
    message: ctk.CTkLabel  # the config's message about this item
    pickers: dict[str, ctk.CTkButton]
    remove: ctk.CTkButton


class ScalarListField(FieldWidget):
    """A list of numbers or text, one row per item (add, remove, edit one at a time; a path list gets its
    pickers on each row). The config's message about one item (`...validation_quantiles[2]: expected a
    number`) is shown beside that item."""

    def _make_input(self, parent):
        self.frame = ctk.CTkFrame(parent, fg_color="transparent")
        self.frame.grid_columnconfigure(0, weight=1)
        self.rows: list[ListRow] = []
        self.add_button = ctk.CTkButton(self.frame, text="Add", width=60, command=self._add_clicked)
        self.add_button.grid(row=1000, column=0, sticky="w", pady=(2, 0))
        return self.frame

    def _add_clicked(self) -> None:
        self._add_row("")
        self.on_change()

    def _add_row(self, text: str) -> None:
        frame = ctk.CTkFrame(self.frame, fg_color="transparent")
        frame.grid(row=len(self.rows), column=0, sticky="ew", pady=1)
        frame.grid_columnconfigure(0, weight=1)
        variable = tk.StringVar(value=text)
        variable.trace_add("write", lambda *_: self.on_change())
        ctk.CTkEntry(frame, textvariable=variable).grid(row=0, column=0, sticky="ew")
        pickers = add_pickers(frame, self.spec, 1, variable.set) if self.spec.path else {}
        remove = ctk.CTkButton(frame, text="Remove", width=64, fg_color="gray40", command=lambda: self._remove(frame))
        remove.grid(row=0, column=1 + len(pickers), padx=(4, 0))
        message = ctk.CTkLabel(frame, text="", text_color=ERROR_COLOR, anchor="w")
        self.rows.append(ListRow(frame, variable, message, pickers, remove))

    def _remove(self, frame) -> None:
        self.set([row.variable.get() for row in self.rows if row.frame is not frame])
        self.on_change()

    def get(self) -> list:
        items = []
        for row in self.rows:
            text = row.variable.get()
            if not text.strip():
                continue  # an empty row is not an item
            if self.spec.item_kind is str:
                items.append(text)
                continue
            try:
                items.append(json.loads(text))
            except json.JSONDecodeError:
                items.append(text)  # kept as typed: the config's message names the item and the expected type
        return items

    def set(self, value: Any) -> None:
        texts = [v if isinstance(v, str) else json.dumps(v) for v in (value or [])]
        while len(self.rows) > len(texts):
            self.rows.pop().frame.destroy()
        for row, text in zip(self.rows, texts):
            if row.variable.get() != text:
                row.variable.set(text)
        for text in texts[len(self.rows) :]:
            self._add_row(text)
        for index, row in enumerate(self.rows):
            row.frame.grid(row=index, column=0, sticky="ew", pady=1)

    def mark(self, message: str | None) -> None:
        """A message naming an item (`name[2]: ...`) goes beside that item's row; any other under the list."""
        for row in self.rows:
            row.message.grid_remove()
        index = _item_index(message) if message else None
        filled = [row for row in self.rows if row.variable.get().strip()]  # the items, as get() returns them
        if index is not None and index < len(filled):
            filled[index].message.configure(text=message.split(": ", 1)[-1])
            filled[index].message.grid(row=1, column=0, columnspan=4, sticky="w")
        super().mark(message)


def _item_index(message: str) -> int | None:
    """The item a config message names: 'sampling.validation_quantiles[2]: ...' -> 2."""
    found = re.match(r"[^:\s]*\[(\d+)\]:", message)
    return int(found.group(1)) if found else None


def make_field_widget(parent, spec: FieldSpec, row: int, on_change: Callable[[], None]) -> FieldWidget:
    if spec.kind is bool:
        return CheckField(parent, spec, row, on_change)
    if spec.choices:
        return ChoiceField(parent, spec, row, on_change)
    if spec.kind is list and not spec.is_dataclass_list:
        return ScalarListField(parent, spec, row, on_change)
    if spec.kind is str and spec.path:
        return PathField(parent, spec, row, on_change)
    return EntryField(parent, spec, row, on_change)


def _range_text(spec: FieldSpec) -> str:
    parts = []
    if spec.min is not None:
        parts.append(f"min {spec.min:g}")
    if spec.max is not None:
        parts.append(f"max {spec.max:g}")
    if spec.optional:
        parts.append("may be empty")
    return f" ({', '.join(parts)})" if parts else ""
