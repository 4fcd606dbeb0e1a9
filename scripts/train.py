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
import re
import subprocess
import sys

import _quiet_other_ranks  # noqa: F401
import _repo_path  # noqa: F401

from modules.trainer.guards.stop_request import (
    EXIT_STOPPED,
    TrainingStopped,
    command_line,
    stop_if_requested_before_training,
    stop_message,
    stop_signals,
)
from modules.trainer.reporting import run_events
from modules.util.errors import UserError, report_user_error, run_script


def main() -> int:
    # First, so a Ctrl-C even while torch is imported is a clean stop, never a traceback; the stop request is this
    # run's, and the handlers found before are restored when it ends.
    from modules.trainer.reporting.library_messages import run_logging

    rank = int(os.environ.get("RANK", 0))
    # Before the imports in run(): libraries print notices while imported; the known-harmless ones go only to the
    # run's log file (modules/trainer/reporting/library_messages.py). Only the main process speaks; the others report
    # warnings and their own failure.
    with stop_signals() as stop, run_logging(logging.INFO if rank == 0 else logging.WARNING):
        return run(stop)


def positive_gb(text: str) -> float:
    """--vram: a card's memory in GB, a finite number above 0 (0 or -1 is no card; refused by argparse, exit 2)."""
    number = re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text.strip())  # no nan / inf
    value = float(text) if number else float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a card's memory. Expected a number of GB above 0, e.g. --vram 24. Fix: give the "
            "card's memory, or leave --vram out to use the GPU found"
        )
    return value


def run(stop) -> int:
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    # Imported after the handlers: they take seconds (torch, diffusers).
    from modules.config.loading import load_config
    from modules.trainer.generic_trainer import GenericTrainer
    from modules.util.stop_point import StopRequested

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
        help="print the GPU and host (RAM) memory plans (per phase) and their verdicts, and exit without training "
        "(with --num-processes N: the RAM of N processes on this machine)",
    )
    parser.add_argument(
        "--vram", type=positive_gb, help="with --plan: the card's memory in GB (default: the GPU found)"
    )
    args = parser.parse_args()
    where = f" (process {rank} of {world_size})" if world_size > 1 else ""
    if args.events_file and rank == 0:  # one writer of the events: the main process
        run_events.open_events_file(args.events_file)
    try:
        config = load_config(args.config_path, args.config_value)
        if args.plan:
            from plan_memory_cli import print_plan

            code = print_plan(config, args.vram)
            print_host_plan(config, args.num_processes)  # RAM, phase by phase, beside the GPU plan
            return code
        if "WORLD_SIZE" not in os.environ:  # this is the launching process: check the count before any starts
            from modules.trainer.guards.process_count import check_process_count, machine_counts

            check_process_count(args.num_processes, config, *machine_counts())
            if args.num_processes > 1:
                return launch_processes(args.num_processes)
        trainer = GenericTrainer(config, stop=stop)
        stop_if_requested_before_training(stop, "reading the config")
        trainer.load_and_cache()  # the cache (encoders alone), then the model: a stop meanwhile ends the run here
        stop_if_requested_before_training(stop, "building the cache")
        result = trainer.train()
    except UserError as error:  # the message names the file or setting and the fix; no traceback
        run_events.emit("error", text=str(error), user_error=True, exit_code=error.exit_code)
        code = report_user_error(error, where)  # 2, or 4 for out of memory (the docstring's list)
        resume_hint = getattr(error, "resume_arguments", None)  # a stopped run's backups found by a fresh start
        if resume_hint is not None and rank == 0:
            print(f"  {command_line(sys.argv, *resume_hint)}", file=sys.stderr)
        return code
    except (TrainingStopped, StopRequested) as stopped:
        if isinstance(stopped, StopRequested):  # a stop point outside the trainer's own phases
            stopped = TrainingStopped.from_stop_point(stopped)
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


def print_host_plan(config, processes: int) -> None:
    from modules.memory.host import build_host_plan, host_plan_text, machine_ram_gib
    from modules.registry import memory_facts_for

    print(host_plan_text(build_host_plan(config, memory_facts_for(config), processes), machine_ram_gib()))


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
