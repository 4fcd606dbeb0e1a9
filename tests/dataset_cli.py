"""scripts/dataset.py loaded as a module, so tests call its main() in-process (a subprocess costs a torch import)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_cli():
    if str(SCRIPTS) not in sys.path:  # its `import _repo_path` lives there
        sys.path.append(str(SCRIPTS))
    spec = importlib.util.spec_from_file_location("dataset_cli", SCRIPTS / "dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
