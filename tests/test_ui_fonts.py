"""customtkinter's font files are installed into ~/.fonts without cutting short a font another window has mapped
(modules/ui/fonts.py): an equal file is left alone, a different one replaced by a rename, never rewritten in place.
Each import runs in a fresh interpreter with its own HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IMPORT = "import modules.ui, customtkinter; print(customtkinter.FontManager.load_font.__func__.__module__)"


def import_window_modules(home: Path) -> str:
    env = {**os.environ, "HOME": str(home)}
    run = subprocess.run([sys.executable, "-c", IMPORT], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="customtkinter copies fonts on Linux only")
def test_fonts_are_installed_once_and_replaced_only_by_a_rename(tmp_path):
    import importlib.util

    package = Path(importlib.util.find_spec("customtkinter").origin).parent / "assets" / "fonts"
    originals = {p.name: p.read_bytes() for p in package.rglob("*") if p.suffix in (".ttf", ".otf")}
    fonts = tmp_path / ".fonts"

    assert import_window_modules(tmp_path) == "modules.ui.fonts"
    assert {p.name: p.read_bytes() for p in fonts.iterdir()} == originals
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in fonts.iterdir()}

    import_window_modules(tmp_path)  # equal files: not written at all (customtkinter alone rewrites each one)
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in fonts.iterdir()} == before

    shapes = fonts / "CustomTkinter_shapes_font.otf"
    shapes.write_bytes(b"an older version")
    changed_inode = shapes.stat().st_ino
    import_window_modules(tmp_path)
    assert shapes.read_bytes() == originals[shapes.name]
    assert shapes.stat().st_ino != changed_inode  # a new file renamed over it: a reader of the old one keeps it whole
    assert sorted(p.name for p in fonts.iterdir()) == sorted(originals)  # no temporary file left
