"""Block swapping: step time with / without swapping and the peak memory of each, measured in one run.

A random-init WAN transformer (real diffusers class) with a LoRA trains with gradient checkpointing for a few steps
without swapping, then with `--swap` blocks swapped (modules/module/block_swap.py), on the same inputs. Prints the
median s/step of each, their ratio, and peak memory: on CUDA the allocator's peak (torch.cuda.max_memory_allocated);
on the CPU the peak bytes of block weights on the compute device as the swapper's own record counts them (a CPU
"device" and CPU storage are the same memory, so this is what the GPU would hold, not the process's size).

    python scripts/benchmark_block_swap.py                       # tiny size, CPU or GPU
    python scripts/benchmark_block_swap.py --preset a14b --size 832x480 --frames 81 --swap 20 --cap-gib 24   # GPU

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
from modules.wan.tiny_models import TEXT_DIM, build_transformer
from modules.wan.variants import VARIANTS

# Transformer shapes: the A14B expert's depth and width (40 blocks, 40 heads x 128; the tiny builder's feed-forward
# is 2x the width where the real one is 13824, and its text width is the tiny 32) and a CPU-sized one.
PRESETS = {
    "tiny": dict(num_layers=8, heads=4, head_dim=32),
    "a14b": dict(num_layers=40, heads=40, head_dim=128),
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
    parser.add_argument("--cap-gib", type=float, default=None, help="CUDA: per-process memory cap for the swap run")
    return parser.parse_args()


def build(args, device: torch.device, dtype: torch.dtype):
    variant = VARIANTS["T2V-A14B"]
    torch.manual_seed(0)
    transformer = build_transformer(variant, **PRESETS[args.preset])
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
        encoder_hidden_states=torch.randn(1, 512, TEXT_DIM, generator=generator),
    )
    return transformer, {
        k: v.to(device, dtype if v.is_floating_point() and k != "timestep" else v.dtype) for k, v in inputs.items()
    }


def timed_steps(transformer, inputs, steps: int, device: torch.device, dtype: torch.dtype) -> list[float]:
    optimizer = torch.optim.AdamW(lora_parameters(transformer), lr=1e-5)
    times = []
    for index in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            output = transformer(**inputs, return_dict=False)[0]
        output.float().square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index:  # the first step warms up kernels and allocator
            times.append(time.perf_counter() - start)
    return times


def block_bytes(block: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*block.parameters(), *block.buffers()] if not t.requires_grad)


def main() -> None:
    args = parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    dtype = torch.bfloat16 if device.type == "cuda" or args.fp8 else torch.float32
    results = {}
    for mode in ("no swap", "swap"):
        transformer, inputs = build(args, device, dtype)
        blocks = len(transformer.blocks)
        swap = blocks // 2 if args.swap is None else args.swap
        per_block = block_bytes(transformer.blocks[0])
        peak_resident = [0]
        if mode == "swap":
            if device.type == "cuda" and args.cap_gib:
                total = torch.cuda.get_device_properties(device).total_memory
                torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gib * 2**30 / total), device)
            swapper = BlockSwapper(transformer.blocks, range(blocks - swap, blocks))
            swapper.observer = lambda kind, index, phase, resident: peak_resident.__setitem__(
                0, max(peak_resident[0], len(resident))
            )
        transformer.to(device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times = timed_steps(transformer, inputs, args.steps, device, dtype)
        resident_blocks = blocks - (swap if mode == "swap" else 0) + peak_resident[0]
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else resident_blocks * per_block
        results[mode] = (statistics.median(times), peak)
        del transformer, inputs
    what = "peak allocated" if device.type == "cuda" else "peak block weights on the device"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {name}; preset {args.preset}, {args.size} x {args.frames} frames, {swap} of {blocks} blocks swapped"
    )
    for mode, (seconds, peak) in results.items():
        print(f"{mode:8s}: {seconds:.4f} s/step, {what} {peak / 2**20:.1f} MiB")
    print(f"step-time ratio swap / no swap: {results['swap'][0] / results['no swap'][0]:.2f}")
    print(f"memory ratio swap / no swap: {results['swap'][1] / results['no swap'][1]:.2f}")


if __name__ == "__main__":
    sys.exit(run_script(main))
