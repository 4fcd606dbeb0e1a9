"""Train from a config file.

python scripts/train.py --config-path training_presets/demo_ti2v_5b_lora.json
python scripts/train.py --config-path my.json --config-value training.max_steps=200 --config-value lora.rank=16
"""

import argparse
import logging
import sys

import _repo_path  # noqa: F401

from modules.base.model_loader import ModelLoadError
from modules.config.loading import load_config
from modules.config.validation import ConfigError
from modules.data.concepts import DataError
from modules.trainer.backups import BackupError
from modules.trainer.generic_trainer import GenericTrainer, TrainingError
from modules.trainer.save_fallback import SaveFailedError
from modules.trainer.workspace_lock import WorkspaceLockError
from modules.util.disk_space import DiskFullError
from modules.wan.formats.lora_file import LoraFileError

# Errors whose message is complete for a user (file or setting, what is wrong, the fix): one line, exit code 2.
KNOWN_ERRORS = (
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-path", required=True, help="JSON training config (see training_presets/)")
    parser.add_argument(
        "--config-value",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. training.learning_rate=1e-4 (repeatable; VALUE is JSON or a string)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config_path, args.config_value)
        result = GenericTrainer(config).train()
    except KNOWN_ERRORS as error:  # the message names the file or setting and the fix; no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"\nTrained {result.steps} steps. Workspace: {result.workspace}")
    for path in result.output_files:
        print(f"  model:  {path}")
    for path in result.sample_files:
        print(f"  sample: {path}")
    print(f"  TensorBoard: tensorboard --logdir {result.workspace / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
