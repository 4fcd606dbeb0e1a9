"""One widget per setting, chosen by the field's declared type: a check box for bool, a menu for choices,
an entry for numbers, text and lists (lists as JSON). Each shows its help as a tooltip and, when the config
refuses its value, the config's own message under it.
"""

from __future__ import annotations

import json
import tkinter as tk
from collections.abc import Callable
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
    """Numbers are read as JSON (1e-4, 3); text is taken as typed; lists are JSON ([0.1, 0.5], ["a.safetensors"])."""

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


class PathField(EntryField):
    """A text entry with buttons that pick a file or a folder (a model source may be either)."""

    def _make_input(self, parent):
        frame = ctk.CTkFrame(parent, fg_color="transparent")
        frame.grid_columnconfigure(0, weight=1)
        self.entry = super()._make_input(frame)
        self.entry.grid(row=0, column=0, sticky="ew")
        for column, (text, folder) in enumerate((("File", False), ("Folder", True)), start=1):
            button = ctk.CTkButton(frame, text=text, width=52, command=lambda f=folder: self._browse(f))
            button.grid(row=0, column=column, padx=(4, 0))
        return frame

    def _browse(self, folder: bool) -> None:
        from tkinter import filedialog

        chosen = filedialog.askdirectory() if folder else filedialog.askopenfilename()
        if chosen:
            self.set(chosen)


PATH_SUFFIXES = ("path", "_dir", "_file")


def make_field_widget(parent, spec: FieldSpec, row: int, on_change: Callable[[], None]) -> FieldWidget:
    if spec.kind is bool:
        return CheckField(parent, spec, row, on_change)
    if spec.choices:
        return ChoiceField(parent, spec, row, on_change)
    if spec.kind is str and spec.name.endswith(PATH_SUFFIXES):
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
