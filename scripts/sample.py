"""Videos from a WAN 2.2 base model, optionally with LoRAs (a weight per LoRA and per expert) and embeddings.

    python scripts/sample.py --model Wan-AI/Wan2.2-TI2V-5B-Diffusers --prompt "a red fox runs through snow"
        --out samples/
    python scripts/sample.py --model /models/T2V-A14B --lora my_lora.safetensors=1.0,0.6 --prompts-file prompts.txt
        --out out/
    python scripts/sample.py --model /models/I2V-A14B --prompt "..." --start-image first.png --clips 3 --out chain/

Each video gets a JSON sidecar beside it (prompt, seed, settings, LoRAs, frames requested and made, encoder).
A prompts file holds one prompt per line; empty lines and lines starting with # are skipped.
See docs/sampling.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import _repo_path  # noqa: F401
import torch

from modules.config.sampling_config import SAMPLE_FORMATS, SCHEDULERS, SampleConfig
from modules.module.bnb_linear import check_quantised_backend
from modules.util.errors import run_script
from modules.wan.loading.base_loras import check_base_lora_files, merge_base_loras
from modules.wan.loading.loader import load_wan_model, to_dtype
from modules.wan.loading.storage import apply_storage_choices
from modules.wan.memory import install_block_swap
from modules.wan.sampling.loras import parse_lora_argument
from modules.wan.sampling.sampler import SamplerOptions, WanModelSampler
from modules.wan.sampling.settings import SampleError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="WAN 2.2 diffusers folder, or a hub id in the local cache")
    parser.add_argument(
        "--variant",
        default=None,
        choices=["TI2V-5B", "T2V-A14B", "I2V-A14B"],
        help="expected variant (default: detect)",
    )
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="PATH[=W[,W_LOW]]",
        help="a LoRA file (or the stem of a _high_noise/_low_noise pair) with its weight; a second weight "
        "is the low-noise expert's (repeatable)",
    )
    parser.add_argument(
        "--base-lora",
        action="append",
        default=[],
        metavar="PATH[=W[,W_LOW]]",
        help="a LoRA merged into the base weights before sampling, as model.base_loras does for training (so a "
        "sample during training can be reproduced exactly; repeatable, in the training config's order)",
    )
    parser.add_argument(
        "--allow-other-model-lora",
        action="store_true",
        help="apply a LoRA whose metadata names another model (refused by default; shapes must still fit)",
    )
    parser.add_argument(
        "--embedding", action="append", default=[], metavar="PATH", help="a UMT5 embedding file (repeatable)"
    )
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", help="what the video shows")
    prompts.add_argument("--prompts-file", help="a text file with one prompt per line")
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--width", type=int, default=None, help="default: 832 (A14B) / 1280 (TI2V-5B)")
    parser.add_argument("--height", type=int, default=None, help="default: 480 (A14B) / 704 (TI2V-5B)")
    parser.add_argument(
        "--frames", type=int, default=None, help="rounded up to 4n+1; default: the model's native count"
    )
    parser.add_argument("--steps", type=int, default=None, help="default: the model's official count")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first video; video k uses seed + k")
    parser.add_argument("--guidance-scale", type=float, default=None)
    parser.add_argument("--guidance-scale-2", type=float, default=None, help="low-noise expert's CFG (A14B)")
    parser.add_argument("--flow-shift", type=float, default=None)
    parser.add_argument("--scheduler", default="unipc", choices=SCHEDULERS)
    parser.add_argument("--fps", type=int, default=None)
    parser.add_argument("--start-image", default="", help="image-to-video start frame (I2V-A14B, TI2V-5B)")
    parser.add_argument(
        "--clips", type=int, default=1, help="chain this many clips, each from the last frame of the one before"
    )
    parser.add_argument("--format", default="mp4", choices=SAMPLE_FORMATS)
    parser.add_argument("--quality", type=int, default=None, help="CRF (lower is better); default 18 MP4, 30 WebM")
    parser.add_argument("--static-threshold", type=float, default=1.0)
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["float32", "bfloat16", "float16"],
        help="transformer and text encoder dtype",
    )
    parser.add_argument(
        "--transformer-storage",
        default=None,
        choices=["float8_e4m3fn", "int8", "nf4"],
        help="store the experts' block linears in fp8 (with a scale) or through bitsandbytes; default: --dtype",
    )
    parser.add_argument(
        "--text-encoder-storage", default=None, choices=["float8_e4m3fn"], help="store UMT5's linears in fp8"
    )
    parser.add_argument(
        "--blocks-to-swap",
        type=int,
        default=0,
        help="keep the last N blocks of each expert in CPU memory, copied to the GPU as they run (docs/block_swap.md)",
    )
    parser.add_argument("--text-encoder-on-cpu", action="store_true", help="encode prompts on the CPU")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--offload-experts", action="store_true", help="keep only the A14B expert in use on the GPU")
    parser.add_argument("--text-max-length", type=int, default=512)
    return parser.parse_args(argv)


def read_prompts(args) -> list[str]:
    if args.prompt is not None:
        return [args.prompt]
    path = Path(args.prompts_file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SampleError(f"--prompts-file {path}: cannot read it ({error.strerror})") from None
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise SampleError(
            f"--prompts-file {path}: not UTF-8 text (byte {error.start}, line {line}). "
            "Fix: save the file as UTF-8 (most editors: 'Save with encoding')."
        ) from None
    prompts = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not prompts:
        raise SampleError(f"--prompts-file {path}: no prompts (one per line; # starts a comment)")
    return prompts


def sample_configs(args, variant) -> list[SampleConfig]:
    width, height = (1280, 704) if variant.name == "TI2V-5B" else (832, 480)
    return [
        SampleConfig(
            prompt=prompt,
            negative_prompt=args.negative_prompt,
            width=args.width or width,
            height=args.height or height,
            frames=args.frames or variant.default_frames,
            seed=args.seed + index,
            steps=args.steps or variant.sample_steps,
            guidance_scale=args.guidance_scale,
            guidance_scale_2=args.guidance_scale_2,
            flow_shift=args.flow_shift,
            scheduler=args.scheduler,
            fps=args.fps,
            start_image=args.start_image,
            clips=args.clips,
        )
        for index, prompt in enumerate(read_prompts(args))
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if args.device == "auto"
        else torch.device(args.device)
    )
    read_prompts(args)  # a bad prompts file is reported before the model loads
    loras = [
        dataclasses.replace(parse_lora_argument(text), allow_other_model=args.allow_other_model_lora)
        for text in args.lora
    ]
    base_loras = [parse_lora_argument(text) for text in args.base_lora]
    check_base_lora_files(base_loras, two_experts=args.variant != "TI2V-5B")
    sampler = WanModelSampler(
        SamplerOptions(
            format=args.format,
            quality=args.quality,
            static_threshold=args.static_threshold,
            device=device,
            offload_experts=args.offload_experts,
            embeddings=args.embedding,
            progress_bar=True,
            text_encoder_on_cpu=args.text_encoder_on_cpu,
        )
    )
    sampler.preflight()  # before minutes of model loading
    dtype = to_dtype(args.dtype, "--dtype")
    if args.transformer_storage in ("int8", "nf4"):
        check_quantised_backend(args.transformer_storage, device, dtype)  # before minutes of loading
    fp8 = args.transformer_storage == "float8_e4m3fn"
    model = load_wan_model(
        args.model,
        transformer_dtype=torch.float8_e4m3fn if fp8 and not base_loras else dtype,
        text_encoder_dtype=dtype,
        text_max_length=args.text_max_length,
        expected_variant=args.variant,
    )
    merge_base_loras(model, base_loras, fp8_storage=fp8 and bool(base_loras))
    apply_storage_choices(model, args.transformer_storage or "", args.text_encoder_storage or "", dtype)
    install_block_swap(model, args.blocks_to_swap, sampling_only=True)
    configs = sample_configs(args, model.variant)
    sampler.use_loras(model, loras)
    out = Path(args.out)
    for index, config in enumerate(configs):
        path = sampler.sample(model, config, out / f"sample-{index:03d}-seed{config.seed}.mp4")
        result = sampler.last_result
        frozen = " (looks frozen)" if result.motion.frozen else ""
        print(f"video: {path} ({result.frames} frames, {result.width}x{result.height}, {result.fps:g} fps){frozen}")
        print(f"  sidecar: {result.sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
