"""The settings as a form: a widget per field (or a list editor per list of sub-settings), the form's values as
config data, and validation by the config's own rules with each message shown at the field it names.

Widgets are built a few at a time (settings_tabs.py), so the window is usable before all ~150 exist: the form
keeps the loaded data, and a setting whose widget is not built yet has its value from there.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from typing import Any

from modules.config.loading import check_consistency
from modules.config.migrations import migrate
from modules.config.validation import ConfigError, from_dict, to_dict
from modules.ui.field_specs import FieldSpec, field_specs, get_path, set_path
from modules.ui.field_widgets import FieldWidget, make_field_widget
from modules.ui.list_editor import ListEditor

MAX_ERRORS = 8


def key_of(message: str) -> str:
    """`data.concepts[0].path: ...` -> data.concepts.0.path"""
    return re.sub(r"\[(\d+)\]", r".\1", message.split(": ", 1)[0].strip())


class ConfigForm:
    def __init__(self, config_class: type, on_change: Callable[[], None]):
        self.config_class = config_class
        self.specs: list[FieldSpec] = field_specs(config_class)
        self.on_change = on_change
        self.fields: dict[str, FieldWidget] = {}
        self.lists: dict[str, ListEditor] = {}
        self.error: tuple[str | None, str] | None = None  # (field name or None, message)
        self.valid_config = None  # the config of the last validation, when it passed
        self.errors: list[tuple[str | None, str]] = []  # every problem found: (widget name or None, message)
        self.data: dict = {}  # the loaded settings, each with its default where the file left it out
        # Lists with an editor of their own (data.concepts: the concept cards), as (parent, spec, on_change) -> editor.
        self.list_editors: dict[str, Callable[..., ListEditor]] = {}

    def build(self, spec: FieldSpec, parent, row: int):
        """Create the widget of `spec` in `parent` (a grid with two columns); returns it."""
        value = get_path(self.data, spec.name)
        value = spec.default if value is dataclasses.MISSING else value
        if spec.is_dataclass_list:
            editor = self.list_editors.get(spec.name, ListEditor)(parent, spec, self.on_change)
            editor.frame.grid(row=2 * row, column=0, columnspan=2, sticky="ew", padx=4, pady=4)
            editor.set(value)
            self.lists[spec.name] = editor
            return editor
        widget = make_field_widget(parent, spec, row, self.on_change)
        widget.set(value)
        self.fields[spec.name] = widget
        return widget

    # ---- values -------------------------------------------------------------------------------------
    def values(self) -> dict:
        data: dict[str, Any] = copy.deepcopy(self.data)
        for name, widget in self.fields.items():
            set_path(data, name, widget.get())
        for name, editor in self.lists.items():
            set_path(data, name, editor.get())
        return data

    def load(self, data: dict) -> None:
        """Show `data` (a config file's content, migrated); settings it leaves out show their defaults."""
        data = migrate(dict(data), "config")
        self.data = {}
        for spec in self.specs:
            value = get_path(data, spec.name)
            value = spec.default if value is dataclasses.MISSING else value
            set_path(self.data, spec.name, copy.deepcopy(value))
            widget = self.lists.get(spec.name) or self.fields.get(spec.name)
            if widget is not None and widget.get() != value:  # an unchanged widget is not redrawn
                widget.set(value)

    def config(self):
        """The validated config object, or ConfigError with the config's message."""
        config = from_dict(self.config_class, migrate(self.values(), "config"))
        check_consistency(config)
        return config

    def config_data(self) -> dict:
        return to_dict(self.config())

    # ---- validation ---------------------------------------------------------------------------------
    def all_widgets(self) -> dict[str, Any]:
        widgets: dict[str, Any] = dict(self.fields)
        for name, editor in self.lists.items():
            widgets[name] = editor
            widgets.update(editor.widgets())
        return widgets

    def validate(self) -> str | None:
        """Mark every field the config complains about; return the first message (None: the config is valid).

        The config's checks stop at the first problem, so each one found is set aside (that setting taken at
        its default) and the check run again, up to MAX_ERRORS: all problems are listed at once."""
        for widget in self.all_widgets().values():
            if widget.error_text is not None:
                widget.mark(None)
        self.valid_config = None
        self.errors = []
        data = migrate(self.values(), "config")
        for _ in range(MAX_ERRORS):
            try:
                config = from_dict(self.config_class, data)
                check_consistency(config)
            except ConfigError as error:
                message = str(error)
                self.errors.append((self.field_of(message), message))
                if not self._set_aside(data, key_of(message)):
                    break
                continue
            if not self.errors:
                self.valid_config = config
            break
        widgets = self.all_widgets()
        for name, message in self.errors:
            if name is not None and widgets[name].error_text is None:
                widgets[name].mark(message)
        self.error = self.errors[0] if self.errors else None
        return self.errors[0][1] if self.errors else None

    def _set_aside(self, data: dict, key: str) -> bool:
        """Put the default of setting `key` into `data`; False when there is none to put (the check cannot go on)."""
        *parents, last = key.split(".")
        spec = next((s for s in self.specs if s.name == key), None)
        if spec is None and len(parents) >= 2 and parents[-1].isdigit():  # an item field: data.concepts.0.path
            owner = next((s for s in self.specs if s.name == ".".join(parents[:-1]) and s.is_dataclass_list), None)
            spec = next((s for s in field_specs(owner.item_kind) if s.name == last), None) if owner else None
        if spec is None or spec.required:
            return False
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.get(part)
            if node is None:
                return False
        if last in node and node[last] == spec.default:
            return False  # the default itself is refused: nothing more to learn
        node[last] = copy.deepcopy(spec.default)
        return True

    def field_of(self, message: str) -> str | None:
        """The widget a config message is about: `data.concepts[0].path: ...` -> data.concepts.0.path."""
        key = key_of(message)
        widgets = self.all_widgets()
        while key:
            if key in widgets:
                return key
            key = key.rpartition(".")[0]
        return None
