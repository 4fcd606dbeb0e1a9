"""Train from a config file.

python scripts/train.py --config-path training_presets/demo_ti2v_5b_lora.json
python scripts/train.py --config-path my.json --config-value training.max_steps=200 --config-value lora.rank=16
python scripts/train.py --config-path my.json --num-processes 4       # 4 GPUs of this machine (docs/multi_gpu.md)
accelerate launch --multi_gpu --num_processes 4 scripts/train.py --config-path my.json   # the same via accelerate
python scripts/train.py --config-path training_presets/wan22_t2v_a14b_lora_24gb.json --plan --vram 24

Exit codes: 0 done; 2 a config, model or data problem (the message says which); 3 stopped on Ctrl-C/SIGTERM
after writing a backup (the message gives the command that resumes); 4 out of GPU memory (in a step: a backup of
the last completed step was written; while caching: the clip is named); 130 stopped at once by a second Ctrl-C.
"""

import argparse
import logging
import os
import subprocess
import sys

import _quiet_other_ranks  # noqa: F401
import _repo_path  # noqa: F401

from modules.trainer import run_events
from modules.trainer.stop_request import (
    EXIT_STOPPED,
    TrainingStopped,
    install_stop_handlers,
    stop_if_requested_before_training,
    stop_message,
)
from modules.util.errors import UserError, report_user_error, run_script


def main() -> int:
    install_stop_handlers()  # first, so a Ctrl-C even while torch is imported is a clean stop, never a traceback
    # Imported after the handlers: they take seconds (torch, diffusers).
    from modules.config.loading import load_config
    from modules.trainer.generic_trainer import GenericTrainer

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
        help="also write the run's progress as JSON lines to PATH (read by the GUI; see run_events.py)",
    )
    parser.add_argument(
        "--num-processes",
        type=int,
        default=1,
        metavar="N",
        help="train on N processes of this machine (N GPUs, or N CPU processes on a machine without one) by "
        "starting them with torchrun; for several machines use accelerate launch (docs/multi_gpu.md)",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the memory plan (per phase) and its verdict, and exit without training",
    )
    parser.add_argument("--vram", type=float, help="with --plan: the card's memory in GB (default: the GPU found)")
    args = parser.parse_args()
    if args.num_processes > 1 and "WORLD_SIZE" not in os.environ:
        return launch_processes(args.num_processes)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    where = f" (process {rank} of {world_size})" if world_size > 1 else ""
    if args.events_file and rank == 0:  # one writer of the events: the main process
        run_events.open_events_file(args.events_file)
    # Only the main process speaks; the others report warnings and their own failure.
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
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
    except UserError as error:  # the message names the file or setting and the fix; no traceback
        run_events.emit("error", text=str(error), user_error=True, exit_code=error.exit_code)
        return report_user_error(error, where)  # 2, or 4 for out of memory (the docstring's list)
    except TrainingStopped as stopped:
        if rank != 0:
            return EXIT_STOPPED
        # Resuming needs the same number of processes (docs/multi_gpu.md).
        text = stop_message(stopped, sys.argv + (["--num-processes", str(world_size)] if world_size > 1 else []))
        print(text, file=sys.stderr)
        run_events.emit("stopped", step=stopped.step, backup=stopped.backup and str(stopped.backup), text=text)
        return EXIT_STOPPED
    except Exception as error:
        run_events.emit("error", text=f"{type(error).__name__}: {error}", user_error=False)
        raise
    if rank != 0:
        return 0
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


def launch_processes(count: int) -> int:
    """Run this script again in `count` processes of this machine under torchrun (the launcher accelerate uses
    for several GPUs). torchrun ends every process when one fails and reports which one."""
    arguments, skip = [], False
    for argument in sys.argv[1:]:
        if skip or argument.startswith("--num-processes"):
            skip = argument == "--num-processes"
            continue
        arguments.append(argument)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={count}"]
    return subprocess.call([*command, __file__, *arguments])


if __name__ == "__main__":
    sys.exit(run_script(main))
