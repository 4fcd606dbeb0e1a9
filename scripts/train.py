"""Train from a config file.

python scripts/train.py --config-path training_presets/demo_ti2v_5b_lora.json
python scripts/train.py --config-path my.json --config-value training.max_steps=200 --config-value lora.rank=16
python scripts/train.py --config-path training_presets/wan22_t2v_a14b_lora_24gb.json --plan --vram 24

Exit status: 0 trained, 2 a config/model/training error, 3 out of GPU memory (a backup of the last completed step
was written; see the message).
"""

import argparse
import logging
import sys

import _repo_path  # noqa: F401

from modules.base.model_loader import ModelLoadError
from modules.config.loading import load_config
from modules.config.validation import ConfigError
from modules.data.stages import CachingOutOfMemory
from modules.trainer.backups import BackupError
from modules.trainer.generic_trainer import GenericTrainer, TrainingError
from modules.trainer.oom import OutOfMemoryStop


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
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the memory plan (per phase) and its verdict, and exit without training",
    )
    parser.add_argument("--vram", type=float, help="with --plan: the card's memory in GB (default: the GPU found)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config_path, args.config_value)
        if args.plan:
            from plan_memory_cli import print_plan

            return print_plan(config, args.vram)
        result = GenericTrainer(config).train()
    except (OutOfMemoryStop, CachingOutOfMemory) as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except (ConfigError, ModelLoadError, TrainingError, BackupError) as error:
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
