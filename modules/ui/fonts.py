"""customtkinter's fonts installed without crashing other windows.

On Linux, every `import customtkinter` copies its three font files into ~/.fonts with `shutil.copy`, which truncates
the file and writes it again. A second process whose Tk has that font mapped (fontconfig and FreeType read fonts
through mmap) then reads past the file's new end and dies of SIGBUS inside Tk, in whatever widget it is drawing: the
GUI tests of parallel runs on one machine did, several times an hour. Here the copy is made only when the file
differs, and then by writing a temporary file and renaming it over the old one, so a mapped font is never cut short
(the old inode lives on until its last user closes it).

`install()` must run before customtkinter is first imported: it loads customtkinter's font_manager module by its
file and changes that class before the package's own import calls it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

MODULE = "customtkinter.windows.widgets.font.font_manager"


def copy_if_changed(source: str, folder: str) -> bool:
    """Put `source` into `folder` under its own name: untouched when equal, else atomically replaced."""
    folder_path = Path(os.path.expanduser(folder))
    target = folder_path / Path(source).name
    data = Path(source).read_bytes()
    try:
        if target.read_bytes() == data:
            return True
    except OSError:
        pass  # missing or unreadable: write it
    try:
        folder_path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder_path)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as error:
        sys.stderr.write(f"FontManager error: {error}\n")  # as customtkinter reports it; it then draws without
        return False
    return True


def install() -> None:
    if MODULE in sys.modules or not sys.platform.startswith("linux"):
        return
    spec = importlib.util.find_spec("customtkinter")
    if spec is None or spec.origin is None:
        return  # no customtkinter: modules/ui/display.py says what to install
    path = Path(spec.origin).parent / "windows" / "widgets" / "font" / "font_manager.py"
    module_spec = importlib.util.spec_from_file_location(MODULE, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    module.FontManager.load_font = classmethod(lambda cls, font_path: copy_if_changed(font_path, cls.linux_font_path))
    sys.modules[MODULE] = module
