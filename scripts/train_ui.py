"""The training window (see docs/ui.md).

python scripts/train_ui.py
python scripts/train_ui.py --config-path training_presets/demo_ti2v_5b_lora.json
"""

import argparse
import signal
import sys

import _repo_path  # noqa: F401

from modules.ui.display import check_window_possible
from modules.util.errors import run_script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-path", help="a preset of training_presets/ or a saved config to open")
    parser.add_argument(
        "--scale", type=float, default=None, help="widget scale (default: from the screen's DPI; e.g. 1.5 or 2)"
    )
    args = parser.parse_args()
    check_window_possible()  # a NoWindowError: one line and exit 1 (docs/ui.md), through run_script
    from modules.ui.app import TrainWindow
    from modules.ui.scaling import apply_scaling

    window = TrainWindow(config_path=args.config_path)
    apply_scaling(window, args.scale)

    def on_signal(signum, _frame):
        # Ctrl-C in the terminal, SIGTERM or a hang-up: no one can answer the close question, so take the choice
        # that loses nothing (stop the run with a backup, then close). The window acts on it within 200 ms.
        window.signal_received = signal.Signals(signum).name

    for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            signal.signal(signum, on_signal)
    window.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
