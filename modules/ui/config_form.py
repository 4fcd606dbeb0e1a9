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


class ConfigForm:
    def __init__(self, config_class: type, on_change: Callable[[], None]):
        self.config_class = config_class
        self.specs: list[FieldSpec] = field_specs(config_class)
        self.on_change = on_change
        self.fields: dict[str, FieldWidget] = {}
        self.lists: dict[str, ListEditor] = {}
        self.error: tuple[str | None, str] | None = None  # (field name or None, message)
        self.valid_config = None  # the config of the last validation, when it passed
        self.data: dict = {}  # the loaded settings, each with its default where the file left it out

    def build(self, spec: FieldSpec, parent, row: int):
        """Create the widget of `spec` in `parent` (a grid with two columns); returns it."""
        value = get_path(self.data, spec.name)
        value = spec.default if value is dataclasses.MISSING else value
        if spec.is_dataclass_list:
            editor = ListEditor(parent, spec, self.on_change)
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
        """Mark the field the config's first complaint names; return the message (None: the config is valid)."""
        for widget in self.all_widgets().values():
            if widget.error_text is not None:
                widget.mark(None)
        self.valid_config = None
        try:
            self.valid_config = self.config()
        except ConfigError as error:
            message = str(error)
            name = self.field_of(message)
            if name is not None:
                self.all_widgets()[name].mark(message)
            self.error = (name, message)
            return message
        self.error = None
        return None

    def field_of(self, message: str) -> str | None:
        """The widget a config message is about: `data.concepts[0].path: ...` -> data.concepts.0.path."""
        key = re.sub(r"\[(\d+)\]", r".\1", message.split(": ", 1)[0].strip())
        widgets = self.all_widgets()
        while key:
            if key in widgets:
                return key
            key = key.rpartition(".")[0]
        return None
