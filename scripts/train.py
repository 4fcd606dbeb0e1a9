"""Train from a config file.

python scripts/train.py --config-path training_presets/demo_ti2v_5b_lora.json
python scripts/train.py --config-path my.json --config-value training.max_steps=200 --config-value lora.rank=16
python scripts/train.py --config-path training_presets/wan22_t2v_a14b_lora_24gb.json --plan --vram 24

Exit codes: 0 done; 2 a config, model or data problem (the message says which); 3 stopped on Ctrl-C/SIGTERM
after writing a backup (the message gives the command that resumes); 4 out of GPU memory (in a step: a backup of
the last completed step was written; while caching: the clip is named); 130 stopped at once by a second Ctrl-C.
"""

import argparse
import logging
import sys

import _repo_path  # noqa: F401

from modules.trainer import run_events
from modules.trainer.stop_request import (
    EXIT_STOPPED,
    TrainingStopped,
    install_stop_handlers,
    stop_if_requested_before_training,
    stop_message,
)


def main() -> int:
    install_stop_handlers()  # first, so a Ctrl-C even while torch is imported is a clean stop, never a traceback
    # Imported after the handlers: they take seconds (torch, diffusers).
    from modules.base.model_loader import ModelLoadError
    from modules.config.loading import load_config
    from modules.config.validation import ConfigError
    from modules.data.concepts import DataError
    from modules.data.stages import CachingOutOfMemory
    from modules.trainer.backups import BackupError
    from modules.trainer.generic_trainer import GenericTrainer, TrainingError
    from modules.trainer.oom import OutOfMemoryStop
    from modules.trainer.save_fallback import SaveFailedError
    from modules.trainer.workspace_lock import WorkspaceLockError
    from modules.util.disk_space import DiskFullError
    from modules.wan.formats.lora_file import LoraFileError

    # Errors whose message is complete for a user (file or setting, what is wrong, the fix): one line, exit code 2.
    known_errors = (
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
        "--events-file",
        metavar="PATH",
        help="also write the run's progress as JSON lines to PATH (read by the GUI; see modules/trainer/run_events.py)",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the memory plan (per phase) and its verdict, and exit without training",
    )
    parser.add_argument("--vram", type=float, help="with --plan: the card's memory in GB (default: the GPU found)")
    args = parser.parse_args()
    if args.events_file:
        run_events.open_events_file(args.events_file)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config_path, args.config_value)
        if args.plan:
            from plan_memory_cli import print_plan

            return print_plan(config, args.vram)
        trainer = GenericTrainer(config)
        stop_if_requested_before_training()
        trainer.load_and_cache()  # the model, then the cache: a stop asked for meanwhile ends the run here
        stop_if_requested_before_training()
        result = trainer.train()
    except (OutOfMemoryStop, CachingOutOfMemory) as error:  # a distinct exit code: a smaller setting may fit
        print(f"error: {error}", file=sys.stderr)
        run_events.emit("error", text=str(error))
        return error.exit_code
    except known_errors as error:  # the message names the file or setting and the fix; no traceback
        print(f"error: {error}", file=sys.stderr)
        run_events.emit("error", text=str(error))
        return 2
    except TrainingStopped as stopped:
        text = stop_message(stopped, sys.argv)
        print(text, file=sys.stderr)
        run_events.emit("stopped", step=stopped.step, backup=stopped.backup and str(stopped.backup), text=text)
        return EXIT_STOPPED
    except Exception as error:
        run_events.emit("error", text=f"{type(error).__name__}: {error}")
        raise
    run_events.emit(
        "done",
        steps=result.steps,
        outputs=list(map(str, result.output_files)),
        samples=list(map(str, result.sample_files)),
    )
    print(f"\nTrained {result.steps} steps. Workspace: {result.workspace}")
    for path in result.output_files:
        print(f"  model:  {path}")
    for path in result.sample_files:
        print(f"  sample: {path}")
    print(f"  TensorBoard: tensorboard --logdir {result.workspace / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
