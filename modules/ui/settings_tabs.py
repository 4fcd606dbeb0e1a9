"""The settings tabs: every field of the config on the tab its section belongs to (tabs.py), each tab
scrollable so no window is cut off on a small screen. The method tab (LoRA / Embedding / Full) shows the
settings of the chosen training_method only.
"""

from __future__ import annotations

import customtkinter as ctk

from modules.ui.config_form import ConfigForm
from modules.ui.tabs import METHOD_TABS, OTHER_TAB, TABS, tab_for

METHOD_TAB_SLOT = "method"  # the one tab that shows LoRA, Embedding or Full settings


class SettingsTabs(ctk.CTkTabview):
    def __init__(self, parent, form: ConfigForm):
        super().__init__(parent)
        self.form = form
        self.pages: dict[str, ctk.CTkScrollableFrame] = {}
        self.section_frames: dict[str, ctk.CTkFrame] = {}
        self.section_tab: dict[str, str] = {}  # section -> tab (method sections: their method tab's name)
        self.rows: dict[str, int] = {}
        self.method_tab = next(iter(METHOD_TABS.values()))
        method_tab_names = set(METHOD_TABS.values())
        for tab in TABS:
            if tab in method_tab_names and tab != self.method_tab:
                continue
            self._page(tab)
        for spec in form.specs:
            tab = tab_for(spec.section)
            page = self._page(tab if tab not in method_tab_names else self.method_tab)
            frame = self._section_frame(spec.section, page, tab)
            row = self.rows[spec.section]
            self.rows[spec.section] += 1
            form.build(spec, frame, row)
        self.shown_method: str | None = None

    def _page(self, tab: str) -> ctk.CTkScrollableFrame:
        if tab not in self.pages:
            self.add(tab)
            page = ctk.CTkScrollableFrame(self.tab(tab))
            page.pack(fill="both", expand=True)
            self.pages[tab] = page
        return self.pages[tab]

    def _section_frame(self, section: str, page, tab: str) -> ctk.CTkFrame:
        if section not in self.section_frames:
            frame = ctk.CTkFrame(page)
            frame.pack(fill="x", padx=4, pady=4)
            frame.grid_columnconfigure(1, weight=1)
            title = ctk.CTkLabel(frame, text=section, font=ctk.CTkFont(size=14, weight="bold"), anchor="w")
            title.grid(row=0, column=0, columnspan=2, sticky="w", padx=8, pady=(4, 0))
            self.section_frames[section] = frame
            self.section_tab[section] = tab
            self.rows[section] = 1  # row 0 holds the title (field rows use 2*row and 2*row + 1)
        return self.section_frames[section]

    def tab_of_field(self, name: str) -> str:
        return self.section_tab[name.split(".", 1)[0]]

    def page_of_tab(self, tab: str):
        return self.pages[self.method_tab if tab in METHOD_TABS.values() else tab]

    def show_method(self, method: str) -> None:
        """Name the method tab after `method` and show only that method's sections on it."""
        if method == self.shown_method or method not in METHOD_TABS:
            return
        wanted = METHOD_TABS[method]
        for section, tab in self.section_tab.items():
            if tab in METHOD_TABS.values():
                frame = self.section_frames[section]
                if tab == wanted:
                    frame.pack(fill="x", padx=4, pady=4)
                else:
                    frame.pack_forget()
        if wanted != self.method_tab:
            selected = self.get()
            self.rename(self.method_tab, wanted)  # keeps the tab's place and frame, not the selection's name
            self.pages[wanted] = self.pages.pop(self.method_tab)
            self.set(wanted if selected == self.method_tab else selected)
            self.method_tab = wanted
        self.shown_method = method

    def set(self, name: str) -> None:
        """Select a tab. customtkinter 5.2.2's own set() hides the other tabs 100 ms later, which hides the
        wanted tab when two selections come within 100 ms; here the others are hidden at once."""
        if name not in self._tab_dict:
            raise ValueError(f"no tab named {name!r}")
        self._current_name = name
        self._segmented_button.set(name)
        self._set_grid_current_tab()
        self._grid_forget_all_tabs(exclude_name=name)

    def visible_tabs(self) -> list[str]:
        return list(self.pages)


__all__ = ["SettingsTabs", "OTHER_TAB"]
