"""The settings tabs: every field of the config on the tab its section belongs to (tabs.py), each tab
scrollable so no window is cut off on a small screen. The method tab (LoRA / Embedding / Full) shows the
settings of the chosen training_method only.

customtkinter widgets are slow to create (~150 of them took 2-8 s), so only the first tab is built at once;
the others are built a slice at a time from Tk's idle loop (`build_some`, each slice well under 200 ms), and a
tab the user opens before its turn is built right then.
"""

from __future__ import annotations

import time

import customtkinter as ctk

from modules.ui.config_form import ConfigForm
from modules.ui.field_specs import section_titles
from modules.ui.field_widgets import ERROR_COLOR
from modules.ui.tabs import METHOD_TABS, OTHER_TAB, TABS, tab_for

METHOD_TAB_SLOT = "method"  # the one tab that shows LoRA, Embedding or Full settings
SLICE_S = 0.05  # building time per idle slice


class SettingsTabs(ctk.CTkTabview):
    def __init__(self, parent, form: ConfigForm):
        super().__init__(parent, command=self._tab_clicked)
        self.form = form
        self.section_titles = section_titles(form.config_class)
        self.pages: dict[str, ctk.CTkScrollableFrame] = {}
        self.bodies: dict[str, ctk.CTkFrame] = {}  # per page: the section frames (extras go below it)
        self.section_frames: dict[str, ctk.CTkFrame] = {}
        self.section_tab: dict[str, str] = {}  # section -> tab (method sections: their method tab's name)
        self.rows: dict[str, int] = {}
        self.method_tab = next(iter(METHOD_TABS.values()))
        self.shown_method: str | None = None
        self.method_tab_names = set(METHOD_TABS.values())
        for tab in TABS:
            if tab in self.method_tab_names and tab != self.method_tab:
                continue
            self._page(tab)
        self.pending = [spec for spec in form.specs if not spec.hidden]  # not built yet, in declaration order
        self.hidden_sections: set[str] = set()
        self.marked: set[str] = set()  # tabs whose name is shown in the error colour
        for spec in form.specs:  # pages exist from the start, so the tab bar is complete at once
            tab = tab_for(spec.section)
            self._page(tab if tab not in self.method_tab_names else self.method_tab)
        self.ensure_built(next(iter(self.pages)))
        # customtkinter 5.2.2 scrolls on <MouseWheel> only, which X11 never sends: its wheel is buttons 4 and 5.
        self.winfo_toplevel().bind_all("<Button-4>", lambda event: self.scroll_under(event, -1), add="+")
        self.winfo_toplevel().bind_all("<Button-5>", lambda event: self.scroll_under(event, 1), add="+")

    # ---- building -----------------------------------------------------------------------------------
    @property
    def fully_built(self) -> bool:
        return not self.pending

    def build_some(self, seconds: float = SLICE_S) -> bool:
        """Build pending fields for about `seconds`; True while some remain."""
        deadline = time.monotonic() + seconds
        while self.pending and time.monotonic() < deadline:
            self._build(self.pending.pop(0))
        return bool(self.pending)

    def ensure_built(self, tab: str) -> None:
        """Build every pending field of `tab` now (the user is looking at it)."""
        wanted = [spec for spec in self.pending if self._page_name(tab_for(spec.section)) == self._page_name(tab)]
        for spec in wanted:
            self.pending.remove(spec)
            self._build(spec)

    def build_all(self) -> None:
        while self.build_some(60.0):
            pass

    def _build(self, spec) -> None:
        tab = tab_for(spec.section)
        frame = self._section_frame(spec.section, self._page(self._page_name(tab)), tab)
        row = self.rows[spec.section]
        self.rows[spec.section] += 1
        self.form.build(spec, frame, row)

    def _page_name(self, tab: str) -> str:
        return self.method_tab if tab in self.method_tab_names else tab

    def _page(self, tab: str) -> ctk.CTkScrollableFrame:
        if tab not in self.pages:
            self.add(tab)
            page = ctk.CTkScrollableFrame(self.tab(tab))
            page.pack(fill="both", expand=True)
            body = ctk.CTkFrame(page, fg_color="transparent")
            body.pack(fill="x")
            self.pages[tab], self.bodies[tab] = page, body
        return self.pages[tab]

    def _section_frame(self, section: str, page, tab: str) -> ctk.CTkFrame:
        if section not in self.section_frames:
            body = self.bodies[next(name for name, p in self.pages.items() if p is page)]
            frame = ctk.CTkFrame(body)
            wanted_method = METHOD_TABS.get(self.shown_method, self.method_tab)
            if tab not in self.method_tab_names or tab == wanted_method:
                frame.pack(fill="x", padx=4, pady=4)
            frame.grid_columnconfigure(1, weight=1)
            text = self.section_titles.get(section, section)
            if text:
                title = ctk.CTkLabel(frame, text=text, font=ctk.CTkFont(size=14, weight="bold"), anchor="w")
                title.grid(row=0, column=0, columnspan=2, sticky="w", padx=8, pady=(4, 0))
            self.section_frames[section] = frame
            self.section_tab[section] = tab
            self.rows[section] = 1  # row 0 holds the title (field rows use 2*row and 2*row + 1)
        return self.section_frames[section]

    # ---- tabs ---------------------------------------------------------------------------------------
    def tab_of_field(self, name: str) -> str:
        return tab_for(name.split(".", 1)[0])

    def page_of_tab(self, tab: str):
        return self.pages[self._page_name(tab)]

    def extra_page(self, tab: str):
        """A tab of the window's own (Tools), after the settings tabs; its content is the caller's."""
        page = self._page(tab)
        self.bodies[tab].pack_forget()  # no settings sections here: their (empty) frame would take room
        return page

    def show_method(self, method: str) -> None:
        """Name the method tab after `method` and show only that method's sections on it."""
        if method == self.shown_method or method not in METHOD_TABS:
            return
        wanted = METHOD_TABS[method]
        for section, tab in self.section_tab.items():
            if tab in self.method_tab_names:
                frame = self.section_frames[section]
                if tab == wanted:
                    frame.pack(fill="x", padx=4, pady=4)
                else:
                    frame.pack_forget()
        if wanted != self.method_tab:
            selected, old = self.get(), self.method_tab
            self.rename(old, wanted)  # keeps the tab's place and frame, not the selection's name
            self.pages[wanted] = self.pages.pop(old)
            self.bodies[wanted] = self.bodies.pop(old)
            self.method_tab = wanted
            self.set(wanted if selected == old else selected)
        self.shown_method = method

    def show_applicable(self, values: dict) -> None:
        """Show each setting only while it applies (its `applies` metadata: one optimizer's settings, the A14B
        expert settings); a section none of whose settings applies is hidden whole."""
        shown_in: dict[str, bool] = {}
        for spec in self.form.specs:
            widget = self.form.fields.get(spec.name)
            if widget is None:
                continue
            applies = spec.applies_to(values)
            if widget.shown != applies:
                widget.show(applies)
                widget.shown = applies
            shown_in[spec.section] = shown_in.get(spec.section, False) or applies
        for section, any_shown in shown_in.items():
            hidden = section in self.hidden_sections
            if any_shown == hidden and self.section_tab[section] not in self.method_tab_names:
                frame = self.section_frames[section]
                if any_shown:
                    self.hidden_sections.discard(section)
                    frames = list(self.section_frames.values())
                    later = frames[frames.index(frame) + 1 :]  # its place: before the next one shown beside it
                    nxt = next((f for f in later if f.master is frame.master and f.winfo_manager()), None)
                    frame.pack(fill="x", padx=4, pady=4, **({"before": nxt} if nxt is not None else {}))
                else:
                    self.hidden_sections.add(section)
                    frame.pack_forget()

    def scroll_under(self, event, direction: int) -> None:
        """Scroll the selected tab's page when the pointer is over it (X11's wheel, buttons 4 and 5)."""
        page = self.pages.get(self.get())
        widget = self.winfo_containing(event.x_root, event.y_root)
        while widget is not None and widget is not page and widget is not getattr(page, "_parent_canvas", None):
            widget = widget.master
        if widget is not None and page is not None:
            page._parent_canvas.yview_scroll(3 * direction, "units")

    def mark_tabs(self, tabs_with_errors: set[str]) -> None:
        """Colour the names of the tabs that hold a refused setting (customtkinter has no per-tab colour option:
        its segmented button's buttons are reached directly)."""
        normal = ctk.ThemeManager.theme["CTkSegmentedButton"]["text_color"]
        bad = {self._page_name(tab) for tab in tabs_with_errors}
        for tab, button in self._segmented_button._buttons_dict.items():
            color = ERROR_COLOR if tab in bad else normal
            if button.cget("text_color") != color:
                button.configure(text_color=color)
        self.marked = bad

    def _tab_clicked(self) -> None:
        self.ensure_built(self.get())

    def set(self, name: str) -> None:
        """Select a tab. customtkinter 5.2.2's own set() hides the other tabs 100 ms later, which hides the
        wanted tab when two selections come within 100 ms; here the others are hidden at once."""
        if name not in self._tab_dict:
            raise ValueError(f"no tab named {name!r}")
        self.ensure_built(name)
        self._current_name = name
        self._segmented_button.set(name)
        self._set_grid_current_tab()
        self._grid_forget_all_tabs(exclude_name=name)

    def visible_tabs(self) -> list[str]:
        return list(self.pages)


__all__ = ["SettingsTabs", "OTHER_TAB"]
