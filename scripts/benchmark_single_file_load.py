"""Single-file load memory: peak resident memory added while loading a ComfyUI single file into bf16 / the model's size.

Writes a random WanTransformer3DModel (real class, mid-sized; TI2V-5B's structure with fewer, narrower blocks) as a
ComfyUI single file (original names under `model.diffusion_model.`), one tensor at a time so that writing never
holds the model. Then a fresh Python process imports everything, measures its resident memory, loads the file
through our loader (detect_single_file + load_part_from_file, the path model.transformer_path takes) into
bfloat16, and reports the peak (VmHWM, reset just before the load) minus that baseline, divided by the loaded
model's bytes.
The goal is 1.2 or less; a loader that built an fp32 copy or a state dict of the file would show 3 or 2.
Results go in docs/benchmarks.md.

    python scripts/benchmark_single_file_load.py [--layers 12] [--heads 8]
        [--file-dtype bf16|fp16|fp8_scaled] [--load-dtype bf16|fp8]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _repo_path  # noqa: F401
import torch

from modules.util.errors import run_script
from modules.util.resources import MODEL_CONFIGS_DIR as CONFIGS_DIR
from modules.wan.loading.detection import read_json
from modules.wan.loading.part_load import build_empty
from modules.wan.loading.single_file_writer import single_file_state_dict, write_streamed

FILE_DTYPES = {
    "bf16": dict(dtype=torch.bfloat16),
    "fp16": dict(dtype=torch.float16),
    "fp8_scaled": dict(dtype=torch.bfloat16, fp8_scaled=True),
}
# What the file is loaded into: bf16, or fp8 storage (model.transformer_dtype float8_e4m3fn: block linears in fp8).
LOAD_DTYPES = {"bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn}


def model_config(layers: int, heads: int) -> dict:
    config = read_json(CONFIGS_DIR / "transformer_TI2V-5B.json")
    head_dim = config["attention_head_dim"]
    return {**config, "num_layers": layers, "num_attention_heads": heads, "ffn_dim": 4 * heads * head_dim}


def write_random_file(path: Path, config: dict, file_dtype: str) -> Path:
    """The file's names, dtypes and shapes from the real class on the meta device, then random data tensor by tensor."""
    meta = single_file_state_dict(
        build_empty("transformer", config),
        "transformer",
        naming="original",
        prefix="model.diffusion_model.",
        config=config,
        **FILE_DTYPES[file_dtype],
    )
    generator = torch.Generator().manual_seed(0)

    def make(name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        if name.endswith(".scale_weight"):
            return torch.full(shape, 0.02 / 448)
        return torch.randn(shape, generator=generator, dtype=torch.float32) * 0.02

    return write_streamed(path, {k: (v.dtype, tuple(v.shape)) for k, v in meta.items()}, make)


def reset_peak_rss() -> None:
    """Linux: restart the peak (VmHWM) from the current RSS. ru_maxrss cannot be reset and survives exec: a child
    forked from a large process (pytest) starts with its parent's RSS as its peak, which measured 2.3 instead of 1.0."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: peak_rss falls back to ru_maxrss, right only in a process started small


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure_in_this_process(path: Path, config: dict, load_dtype: str = "bf16") -> dict:
    """Baseline RSS after every import and the empty model's build, then the load; the peak since the baseline."""
    import gc

    import psutil

    from modules.wan.loading.file_detection import detect_single_file
    from modules.wan.loading.part_load import load_part_from_file

    build_empty("transformer", config)  # imports diffusers' lazily loaded modules before the baseline
    gc.collect()
    reset_peak_rss()
    baseline = psutil.Process().memory_info().rss
    start = time.perf_counter()
    info = detect_single_file(path, "transformer")
    model = load_part_from_file(info, config, LOAD_DTYPES[load_dtype], config_source="benchmark config")
    seconds = time.perf_counter() - start
    peak = peak_rss()
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    model_bytes = sum(t.numel() * t.element_size() for t in tensors)
    return dict(
        baseline=baseline,
        peak=peak,
        model_bytes=model_bytes,
        seconds=seconds,
        ratio=(peak - baseline) / model_bytes,
        fp32_params=sum(t.numel() for t in tensors if t.dtype == torch.float32),
    )


def run(layers: int, heads: int, file_dtype: str, load_dtype: str = "bf16") -> dict:
    config = model_config(layers, heads)
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "config.json"
        config_path.write_text(json.dumps(config))
        path = write_random_file(Path(folder) / "wan2.2_random_transformer.safetensors", config, file_dtype)
        file_bytes = path.stat().st_size
        # A fresh process: this one's allocator already holds memory from writing the file.
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(path), str(config_path), "--load-dtype", load_dtype],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"the measuring process failed:\n{child.stderr[-4000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
    return {
        **result,
        "file_bytes": file_bytes,
        "file_dtype": file_dtype,
        "load_dtype": load_dtype,
        "layers": layers,
        "heads": heads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=8, help="width = heads * 128")
    parser.add_argument("--file-dtype", choices=list(FILE_DTYPES), default="bf16")
    parser.add_argument("--load-dtype", choices=list(LOAD_DTYPES), default="bf16")
    parser.add_argument("--child", nargs=2, metavar=("FILE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                measure_in_this_process(
                    Path(args.child[0]), json.loads(Path(args.child[1]).read_text()), args.load_dtype
                )
            )
        )
        return
    r = run(args.layers, args.heads, args.file_dtype, args.load_dtype)
    mib = 1 << 20
    print(f"file: {r['file_dtype']}, {r['file_bytes'] / mib:.0f} MiB ({r['layers']} layers, width {r['heads'] * 128})")
    print(
        f"loaded model ({r['load_dtype']}, diffusers' fp32-kept modules in fp32): {r['model_bytes'] / mib:.0f} MiB, "
        f"{r['fp32_params']:,} fp32 parameters; load took {r['seconds']:.1f} s"
    )
    print(
        f"baseline RSS {r['baseline'] / mib:.0f} MiB, peak RSS {r['peak'] / mib:.0f} MiB, "
        f"increase {(r['peak'] - r['baseline']) / mib:.0f} MiB"
    )
    print(f"peak RSS increase / model size: {r['ratio']:.3f} (goal <= 1.2)")


if __name__ == "__main__":
    sys.exit(run_script(main))
