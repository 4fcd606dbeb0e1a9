"""An editable list of sub-settings (data concepts, sample prompts): add and remove items, each item a small
form built from the item dataclass's own fields. Item fields are named `<list>.<index>.<field>`, the way
`--config-value` addresses them, so the config's messages (`data.concepts[0].path: ...`) find them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import customtkinter as ctk

from modules.ui.field_specs import FieldSpec, field_specs, get_path
from modules.ui.field_widgets import ERROR_COLOR, FieldWidget, make_field_widget


class ListEditor:
    def __init__(self, parent, spec: FieldSpec, on_change: Callable[[], None]):
        self.spec, self.on_change = spec, on_change
        self.item_specs = field_specs(spec.item_kind)
        self.frame = ctk.CTkFrame(parent)
        header = ctk.CTkFrame(self.frame, fg_color="transparent")
        header.pack(fill="x", padx=6, pady=(6, 0))
        self.title = ctk.CTkLabel(header, text=spec.label, font=ctk.CTkFont(weight="bold"))
        self.title.pack(side="left")
        self.add_button = ctk.CTkButton(header, text="Add", width=70, command=self._add_clicked)
        self.add_button.pack(side="right")
        self.error_label = ctk.CTkLabel(self.frame, text="", text_color=ERROR_COLOR, anchor="w")
        self.error_text: str | None = None
        self.items: list[tuple[ctk.CTkFrame, dict[str, FieldWidget]]] = []

    # ---- items --------------------------------------------------------------------------------------
    def _add_clicked(self) -> None:
        self.add_item({})
        self.on_change()

    def add_item(self, values: dict) -> None:
        index = len(self.items)
        box = ctk.CTkFrame(self.frame)
        box.pack(fill="x", padx=6, pady=4)
        box.grid_columnconfigure(1, weight=1)
        widgets = {}
        for row, item_spec in enumerate(self.item_specs):
            named = dataclasses.replace(item_spec, name=f"{self.spec.name}.{index}.{item_spec.name}")
            widget = make_field_widget(box, named, row, self.on_change)
            value = get_path(values, item_spec.name)
            widget.set(item_spec.default if value is dataclasses.MISSING else value)
            widgets[named.name] = widget
        remove = ctk.CTkButton(box, text="Remove", width=80, fg_color="gray40", command=lambda: self._remove(box))
        remove.grid(row=0, column=2, padx=6, pady=2)
        self.items.append((box, widgets))

    def _remove(self, box) -> None:
        values = [v for (b, _), v in zip(self.items, self.get()) if b is not box]
        self.set(values)
        self.on_change()

    def set(self, values: list[dict]) -> None:
        """Show `values`: the existing item forms are refilled (creating widgets is what takes time), extra
        ones removed, missing ones added."""
        values = list(values or [])
        while len(self.items) > len(values):
            box, _ = self.items.pop()
            box.destroy()
        for index, ((_, widgets), item) in enumerate(zip(self.items, values)):
            for item_spec in self.item_specs:
                value = get_path(item, item_spec.name)
                widget = widgets[f"{self.spec.name}.{index}.{item_spec.name}"]
                widget.set(item_spec.default if value is dataclasses.MISSING else value)
        for item in values[len(self.items) :]:
            self.add_item(item)

    def get(self) -> list[dict]:
        result = []
        for _, widgets in self.items:
            item: dict[str, Any] = {}
            for name, widget in widgets.items():
                item[name.rsplit(".", 1)[-1]] = widget.get()
            result.append(item)
        return result

    def widgets(self) -> dict[str, FieldWidget]:
        return {name: widget for _, widgets in self.items for name, widget in widgets.items()}

    def mark(self, message: str | None) -> None:
        """A message about the list as a whole (e.g. 'at least one concept is needed')."""
        self.error_text = message
        if message is None:
            self.error_label.pack_forget()
        else:
            self.error_label.configure(text=message)
            self.error_label.pack(fill="x", padx=6, pady=(0, 6))
