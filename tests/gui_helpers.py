"""What the GUI test files share: the display and a preset window, pumping Tk's events as mainloop would,
screenshots, setting fields as a user does, and pointing the demo preset at the tiny model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "training_presets" / "demo_ti2v_5b_lora.json"
SCREENSHOTS = REPO / "workspace" / "test-output" / "ui"
WINDOW_TITLE = "WAN 2.2 trainer"


def pump(win, until=lambda: True, timeout: float = 0.3) -> None:
    """Process Tk events (as mainloop would) until `until()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        win.update()
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        time.sleep(0.02)


def pump_until_closed(win, timeout: float) -> None:
    """Process events until the window has destroyed itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not win.winfo_exists():
                return
            win.update()
        except Exception:  # noqa: BLE001 - Tk raises TclError on a destroyed application
            return
        time.sleep(0.02)
    raise AssertionError(f"the window did not close within {timeout} s")


def screenshot(win, name: str, whole_screen: bool = False) -> Path:
    from PIL import ImageGrab

    win.update()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    x, y = win.winfo_rootx(), win.winfo_rooty()
    box = None if whole_screen else (x, y, x + win.winfo_width(), y + win.winfo_height())
    path = SCREENSHOTS / f"{name}.png"
    ImageGrab.grab(bbox=box, xdisplay=os.environ["DISPLAY"]).save(path)
    return path


def set_field(win, name: str, value) -> None:
    win.form.all_widgets()[name].set(value)
    win.validate_now()


def start_enabled(win) -> bool:
    return win.run_panel.start_button.cget("state") == "normal"


def point_at_tiny_model(win, model: Path, data: Path, workspace: Path, cache: Path, steps: int) -> list[str]:
    """Set the fields a user would change for the tiny demo; return the same as --config-value overrides."""
    changes = {
        "model.base_path": str(model),
        "data.concepts.0.path": str(data),
        "data.cache_dir": str(cache),
        "output.workspace_dir": str(workspace),
        "output.save_every_steps": 0,
        "output.tensorboard": False,
        "training.max_steps": steps,
        "training.lr_scheduler": "constant",
        "sampling.samples.0.steps": 2,
        "sampling.samples.0.frames": 5,
    }
    for name, value in changes.items():
        set_field(win, name, value)
    return [f"{name}={json.dumps(value) if not isinstance(value, str) else value}" for name, value in changes.items()]


def wait_for_run(win, timeout: float = 240) -> None:
    pump(win, lambda: win.run_panel.run is None, timeout)


def stop_handlers_installed(pid: int) -> bool:
    """scripts/train.py has installed its stop handlers (SIGTERM is caught; Python alone catches only SIGINT),
    so a Stop now is a clean stop rather than a KeyboardInterrupt."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (15 - 1)))
