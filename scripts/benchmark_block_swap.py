"""Block swapping: step time with / without swapping and the peak memory of each, measured in one run.

Two copies of a random-init WAN transformer (real diffusers class) with a LoRA train with gradient checkpointing on
the same inputs, one plain and one with `--swap` blocks swapped (modules/module/block_swap.py); their steps
alternate (plain, swapped, plain, ...) so a drift of the machine's speed hits both alike. `--preset a14b` builds
blocks of the real A14B expert's shape (width 5120, feed-forward 13824, text width 4096; `--layers` of them, 40 in
the real model) in bf16 one block at a time (modules/wan/random_models.py). Prints the median s/step of each, their
ratio, and peak memory: on CUDA the allocator's peak during the case's own steps less the other copy's weights; on
the CPU the peak bytes of block weights on the compute device as the swapper's own record counts them (a CPU
"device" and CPU storage are the same memory, so this is what the GPU would hold, not the process's size).

    python scripts/benchmark_block_swap.py                       # tiny size, CPU or GPU
    python scripts/benchmark_block_swap.py --preset a14b --layers 12 --size 832x480 --frames 81 --swap 6   # GPU

Results go in docs/benchmarks.md with the machine they ran on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import _repo_path  # noqa: F401
import torch

from modules.module.block_swap import BlockSwapper
from modules.module.fp8_linear import convert_to_fp8_storage
from modules.module.lora import attach_lora, lora_parameters
from modules.util.errors import run_script
from modules.wan.random_models import random_transformer
from modules.wan.tiny_models import build_transformer
from modules.wan.variants import VARIANTS

# A CPU-sized shape; "a14b" is the real expert's block (resources/model_configs/transformer_T2V-A14B.json).
PRESETS = {
    "tiny": dict(num_layers=8, heads=4, head_dim=32),
    "a14b": None,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--size", default="64x64", help="WIDTHxHEIGHT in pixels (latents are 1/8 or 1/16 of it)")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--swap", type=int, default=None, help="blocks to swap (default: half)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per mode (after one warm-up step)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fp8", action="store_true", help="fp8 storage of the block linears (bf16 compute)")
    parser.add_argument("--layers", type=int, default=None, help="blocks (default: 8 tiny, 12 a14b; the real has 40)")
    return parser.parse_args()


def build(args, device: torch.device, dtype: torch.dtype):
    variant = VARIANTS["T2V-A14B"]
    torch.manual_seed(0)
    if PRESETS[args.preset] is None:  # the real block shape, built on the device a block at a time, kept on the CPU
        transformer = random_transformer(
            "T2V-A14B", device, dtype, host=torch.device("cpu"), num_layers=args.layers or 12
        )
    else:
        shape = {**PRESETS[args.preset], **({"num_layers": args.layers} if args.layers else {})}
        transformer = build_transformer(variant, **shape)
    transformer.requires_grad_(False).to(dtype)
    if args.fp8:
        convert_to_fp8_storage(transformer)
    attach_lora(transformer, rank=32, alpha=32.0)
    transformer.enable_gradient_checkpointing()
    transformer.train()
    width, height = (int(v) for v in args.size.split("x"))
    latent_frames = (args.frames - 1) // variant.vae_stride_temporal + 1
    stride = variant.vae_stride_spatial
    generator = torch.Generator().manual_seed(1)
    inputs = dict(
        hidden_states=torch.randn(1, 16, latent_frames, height // stride, width // stride, generator=generator),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 512, transformer.config.text_dim, generator=generator),
    )
    return transformer, {
        k: v.to(device, dtype if v.is_floating_point() and k != "timestep" else v.dtype) for k, v in inputs.items()
    }


def one_step(transformer, optimizer, inputs, device: torch.device, dtype: torch.dtype) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        output = transformer(**inputs, return_dict=False)[0]
    output.float().square().mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def block_bytes(block: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*block.parameters(), *block.buffers()] if not t.requires_grad)


def device_bytes(module: torch.nn.Module, device: torch.device) -> int:
    tensors = {t.data_ptr(): t for t in [*module.parameters(), *module.buffers()] if t.device == device}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def main() -> None:
    args = parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    dtype = torch.bfloat16 if device.type == "cuda" or args.fp8 or args.preset == "a14b" else torch.float32
    cases = {}
    for mode in ("no swap", "swap"):
        transformer, inputs = build(args, device, dtype)
        blocks = len(transformer.blocks)
        swap = blocks // 2 if args.swap is None else args.swap
        peak_resident = [0]
        if mode == "swap":
            swapper = BlockSwapper(transformer.blocks, range(blocks - swap, blocks))
            swapper.observer = lambda kind, index, phase, resident: peak_resident.__setitem__(
                0, max(peak_resident[0], len(resident))
            )
        transformer.to(device)
        optimizer = torch.optim.AdamW(lora_parameters(transformer), lr=1e-5)
        cases[mode] = dict(transformer=transformer, inputs=inputs, optimizer=optimizer, times=[], peak=0,
                           swap=swap if mode == "swap" else 0, resident=peak_resident)  # fmt: skip
    per_block = block_bytes(cases["swap"]["transformer"].blocks[0])
    for round_ in range(args.steps + 1):  # interleaved; round 0 warms kernels and the allocator up
        for mode, case in cases.items():
            other = next(c for m, c in cases.items() if m != mode)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = one_step(case["transformer"], case["optimizer"], case["inputs"], device, dtype)
            if device.type == "cuda":  # this case's peak: everything allocated less the other copy's weights
                peak = torch.cuda.max_memory_allocated(device) - device_bytes(other["transformer"], device)
            else:
                peak = (blocks - case["swap"] + case["resident"][0]) * per_block
            case["peak"] = max(case["peak"], peak)
            if round_:
                case["times"].append(seconds)
    what = "peak allocated" if device.type == "cuda" else "peak block weights on the device"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    shape = cases["swap"]["transformer"].config
    print(
        f"device: {name}; preset {args.preset} (width {shape.num_attention_heads * shape.attention_head_dim}, "
        f"ffn {shape.ffn_dim}), {args.size} x {args.frames} frames, {cases['swap']['swap']} of {blocks} blocks "
        f"swapped, {args.steps} interleaved steps each"
    )
    results = {mode: (statistics.median(case["times"]), case["peak"]) for mode, case in cases.items()}
    for mode, (seconds, peak) in results.items():
        print(f"{mode:8s}: {seconds:.4f} s/step, {what} {peak / 2**20:.1f} MiB")
    print(f"step-time ratio swap / no swap: {results['swap'][0] / results['no swap'][0]:.2f}")
    print(f"memory ratio swap / no swap: {results['swap'][1] / results['no swap'][1]:.2f}")


if __name__ == "__main__":
    sys.exit(run_script(main))
