"""HiDPI: customtkinter scales itself on Windows and macOS; on Linux take the factor from the screen's DPI.
Whatever the factor, the window is kept inside the screen (a 2x scale once made a 2380x1505 window on a
1920x1080 screen): its size is reduced to fit, and the settings tabs scroll."""

from __future__ import annotations

import sys

import customtkinter as ctk

BASE_SIZE = (1360, 860)  # the window's size at scale 1
SCREEN_MARGIN = (40, 80)  # room for panels and title bars


def dpi_factor(window) -> float:
    return window.winfo_fpixels("1i") / 96.0


def fit_size(scale: float, screen: tuple[int, int]) -> tuple[int, int]:
    """The unscaled geometry whose scaled size fits `screen` (customtkinter multiplies geometry by the scale)."""
    width = min(BASE_SIZE[0], (screen[0] - SCREEN_MARGIN[0]) / scale)
    height = min(BASE_SIZE[1], (screen[1] - SCREEN_MARGIN[1]) / scale)
    return int(width), int(height)


def apply_scaling(window, scale: float | None = None) -> float:
    """Scale widgets and the window by `scale`, or on Linux by DPI / 96 when that is 1.25 or more; then fit the
    window inside the screen."""
    if scale is None:
        scale = 1.0
        if sys.platform.startswith("linux"):
            factor = dpi_factor(window)
            scale = round(factor * 4) / 4 if factor >= 1.25 else 1.0
    if scale != 1.0:
        ctk.set_widget_scaling(scale)
        ctk.set_window_scaling(scale)
    width, height = fit_size(scale, (window.winfo_screenwidth(), window.winfo_screenheight()))
    window.geometry(f"{width}x{height}")
    window.minsize(min(900, width), min(560, height))
    return scale
