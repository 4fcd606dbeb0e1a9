"""Dataset tools: from raw footage to a checked, captioned training set (docs/dataset_tools.md).

python scripts/dataset.py split footage/ --out clips/ --min-seconds 2 --max-seconds 8 --gap 0.2
python scripts/dataset.py split footage/ --out clips/ --min-frames 33 --max-frames 81 --fps 16
python scripts/dataset.py caption clips/ --model /models/Qwen2.5-VL-7B-Instruct --prefix "mystyle, " --batch-size 4
python scripts/dataset.py check clips/ --fps 16 --frames 81 --resolution 480      # or: check --config my.json
python scripts/dataset.py check --config my.json --json

Progress goes to stderr, results to stdout (--json: one JSON document). Exit codes: 0 done; 2 a problem with
an input (the message names the file or option and the fix).
"""

import argparse
import json
import sys
from pathlib import Path

import _repo_path  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """The exit code: 0 done, 2 (or the error's own code) for a UserError, printed as one line by run_script."""
    from modules.util.errors import run_script

    args = parser().parse_args(argv)
    return run_script(args.run, args)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)

    split = commands.add_parser("split", help="cut long videos into clips at shot boundaries")
    split.add_argument("inputs", nargs="+", type=Path, help="video files or folders of them (only read)")
    split.add_argument("--out", type=Path, required=True, help="folder for the clips and their .json sidecars")
    split.add_argument("--min-seconds", type=float, default=1.0, help="shortest clip kept (default 1)")
    split.add_argument("--max-seconds", type=float, default=10.0, help="split longer shots (10; 0: no limit)")
    split.add_argument("--min-frames", type=int, help="shortest clip in training frames (4n+1) at --fps")
    split.add_argument("--max-frames", type=int, help="longest clip in training frames (4n+1) at --fps")
    split.add_argument("--fps", type=float, default=16.0, help="the trained frame rate for --min/max-frames (16)")
    split.add_argument("--gap", type=float, default=0.0, help="seconds kept away from each cut (default 0)")
    split.add_argument("--threshold", type=float, default=27.0, help="PySceneDetect content threshold (27)")
    split.add_argument("--min-shot", type=float, default=0.5, help="shortest shot the detector reports, s (0.5)")
    split.add_argument("--crf", type=int, default=18, help="libx264 quality of re-encoded clips (18)")
    split.add_argument("--preset", default="medium", help="libx264 preset of re-encoded clips (medium)")
    split.add_argument("--reencode", action="store_true", help="re-encode every clip, even on keyframe cuts")
    split.add_argument("--json", action="store_true", help="print the clips as JSON")
    split.set_defaults(run=run_split)

    caption = commands.add_parser("caption", help="write a caption .txt beside each video/image with a Qwen-VL model")
    caption.add_argument("inputs", nargs="*", type=Path, help="files or folders (or use --config)")
    caption.add_argument("--model", required=True, help="local checkpoint folder or Hugging Face id (from the cache)")
    caption.add_argument("--allow-download", action="store_true", help="download the model if it is not cached")
    caption.add_argument("--instruction", help="what to ask the model (default: a detailed video description)")
    caption.add_argument("--prefix", default="", help="text put before every caption (a trigger word)")
    caption.add_argument("--suffix", default="", help="text put after every caption")
    caption.add_argument("--max-new-tokens", type=int, default=256, help="longest caption in tokens (256)")
    caption.add_argument("--batch-size", type=int, default=1, help="files per generate call (1)")
    caption.add_argument("--sample-frames", type=int, default=16, help="frames shown to the model per video (16)")
    caption.add_argument("--quantize", choices=("none", "8bit", "4bit"), default="none", help="bitsandbytes (CUDA)")
    caption.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    caption.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto")
    caption.add_argument("--overwrite", action="store_true", help="replace existing captions")
    caption.add_argument("--json", action="store_true", help="print the results as JSON")
    add_data_options(caption)
    caption.set_defaults(run=run_caption)

    check = commands.add_parser("check", help="what will train, what is skipped and why")
    check.add_argument("inputs", nargs="*", type=Path, help="concept folders (or use --config)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    add_data_options(check)
    check.set_defaults(run=run_check)
    return root


def add_data_options(command: argparse.ArgumentParser) -> None:
    """The data settings that decide windows and buckets: a training config's, or given here."""
    group = command.add_argument_group("data settings (ignored with --config, which gives its own)")
    group.add_argument("--config", type=Path, help="a training config: its concepts and data settings")
    group.add_argument("--config-value", action="append", default=[], help="override a config setting, KEY=VALUE")
    group.add_argument("--fps", type=float, default=16.0, help="trained frame rate (16; TI2V-5B: 24)")
    group.add_argument("--frames", type=int, default=81, help="window length, 4n+1 (81)")
    group.add_argument("--min-frames", type=int, default=1, help="shortest window kept (1)")
    group.add_argument("--resolution", type=int, default=480, help="bucket area is resolution^2 (480)")
    group.add_argument("--pixel-multiple", type=int, default=16, help="bucket sides' multiple (16; TI2V-5B: 32)")
    group.add_argument("--mode", default="head", help="extraction mode: head, chunk, slide, uniform, full")
    group.add_argument("--max-windows", type=int, default=1, help="windows per video for chunk/slide/uniform (1)")
    group.add_argument("--stride", type=int, default=8, help="slide mode's stride in frames (8)")
    group.add_argument("--subfolders", action="store_true", help="also read the folders' subfolders")


def concept_plans(args):
    from modules.data.flow.video_dataset import DatasetSettings
    from modules.dataset_tools import data_settings
    from modules.util.errors import UserError

    if args.config:
        return data_settings.from_config(args.config, args.config_value)
    if not args.inputs:
        raise UserError("no input: pass folders (or files) or --config my.json")
    settings = DatasetSettings(
        target_fps=args.fps,
        window_frames=args.frames,
        min_frames=args.min_frames,
        extraction_mode=args.mode,
        max_windows=args.max_windows,
        stride=args.stride,
        target_area=args.resolution * args.resolution,
        pixel_multiple=args.pixel_multiple,
    )
    return data_settings.from_folders(args.inputs, settings, args.subfolders)


def run_split(args) -> int:
    from modules.dataset_tools.split import SplitSettings, split_sources

    settings = SplitSettings(
        out_dir=args.out,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds or None,
        min_frames=args.min_frames,
        max_frames=args.max_frames,
        trained_fps=args.fps,
        gap_seconds=args.gap,
        threshold=args.threshold,
        min_shot_seconds=args.min_shot,
        crf=args.crf,
        preset=args.preset,
        always_reencode=args.reencode,
    )
    results, failures = split_sources(args.inputs, settings)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            where = f"frames {r['start_frame']}-{r['end_frame']} of {r['source']}"
            print(f"{r['clip']}: {where} ({r['method']}; {r['status']})")
        print(f"{len(results)} clip(s) in {args.out}")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 2 if failures else 0


def run_caption(args) -> int:
    from modules.dataset_tools.caption import CaptionSettings, caption_files, files_to_caption

    plans = concept_plans(args)
    settings = CaptionSettings(
        model=args.model,
        allow_download=args.allow_download,
        instruction=args.instruction,
        prefix=args.prefix,
        suffix=args.suffix,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        sample_frames=args.sample_frames,
        quantize=args.quantize,
        device=args.device,
        dtype=args.dtype,
        overwrite=args.overwrite,
    )
    results = caption_files(files_to_caption(plans), settings)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['path']}: {r['status']}")
    return 0


def run_check(args) -> int:
    from modules.dataset_tools.check import check_concepts, report_text

    report = check_concepts(concept_plans(args))
    print(json.dumps(report, indent=2) if args.json else report_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
