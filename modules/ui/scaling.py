"""HiDPI: customtkinter scales itself on Windows and macOS; on Linux take the factor from the screen's DPI."""

from __future__ import annotations

import sys

import customtkinter as ctk


def dpi_factor(window) -> float:
    return window.winfo_fpixels("1i") / 96.0


def apply_scaling(window, scale: float | None = None) -> float:
    """Scale widgets and the window by `scale`, or on Linux by DPI / 96 when that is 1.25 or more."""
    if scale is None:
        if not sys.platform.startswith("linux"):
            return 1.0
        factor = dpi_factor(window)
        scale = round(factor * 4) / 4 if factor >= 1.25 else 1.0
    if scale != 1.0:
        ctk.set_widget_scaling(scale)
        ctk.set_window_scaling(scale)
    return scale
