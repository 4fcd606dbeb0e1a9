"""The errors whose message is complete for a user: the file or setting, what was wrong and the fix.

Front ends (scripts/train.py, a GUI) show these as one line, without a traceback, and exit with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from modules.base.model_loader import ModelLoadError
from modules.config.validation import ConfigError
from modules.data.concepts import DataError
from modules.trainer.backups import BackupError
from modules.trainer.generic_trainer import TrainingError
from modules.trainer.save_fallback import SaveFailedError
from modules.trainer.workspace_lock import WorkspaceLockError
from modules.util.disk_space import DiskFullError
from modules.wan.formats.lora_file import LoraFileError

KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    ModelLoadError,
    TrainingError,
    BackupError,
    DataError,
    WorkspaceLockError,
    DiskFullError,
    SaveFailedError,
    LoraFileError,
)
