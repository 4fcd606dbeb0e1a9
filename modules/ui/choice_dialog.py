"""A question with a few answers, as a small window over the main one. It never blocks: each answer is a button
that runs its callback and closes the question (no nested event loop, so the run keeps being followed while it
is open, and tests press its buttons like a user)."""

from __future__ import annotations

from collections.abc import Callable

import customtkinter as ctk


class ChoiceDialog(ctk.CTkToplevel):
    def __init__(self, parent, title: str, message: str, choices: list[tuple[str, Callable[[], None]]]):
        super().__init__(parent)
        self.title(title)
        self.transient(parent)
        self.resizable(False, False)
        ctk.CTkLabel(self, text=message, justify="left", anchor="w", wraplength=520).pack(
            fill="x", padx=16, pady=(14, 10)
        )
        self.buttons: dict[str, ctk.CTkButton] = {}
        for label, callback in choices:
            button = ctk.CTkButton(self, text=label, command=lambda c=callback: self._answer(c))
            button.pack(fill="x", padx=16, pady=3)
            self.buttons[label] = button
        cancel = choices[-1][1]  # the last answer is the harmless one: the window manager's close means it too
        self.protocol("WM_DELETE_WINDOW", lambda: self._answer(cancel))
        self.bind("<Escape>", lambda _event: self._answer(cancel))
        self.answered = False

    def _answer(self, callback: Callable[[], None]) -> None:
        if self.answered:
            return
        self.answered = True
        self.destroy()
        callback()

    def press(self, label_start: str) -> None:
        """Press the answer whose label starts with `label_start` (for tests and keyboard shortcuts)."""
        (label,) = [label for label in self.buttons if label.startswith(label_start)]
        self.buttons[label].invoke()
