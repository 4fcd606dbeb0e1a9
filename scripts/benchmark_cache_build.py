"""Cache build: time to probe, decode, resize and VAE-encode a set of clips / the bare VAE encode of the same frames.

Both run in this one process on the same model and the same windows. The pipeline run is the real one
(collect -> probe -> plan -> bucket -> cache latents, written to a disk cache); the bare run encodes the
exact pixel tensors of those windows, already decoded and resized in memory. Prints the ratio; the goal is
1.2 or less. Results go in docs/benchmarks.md.

    python scripts/benchmark_cache_build.py [--clips 6] [--resolution 256] [--frames 33]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _repo_path  # noqa: F401
import torch

from modules.config.loading import config_from_dict
from modules.data.caching.cache import DiskCache
from modules.data.flow.pipeline import Pipeline
from modules.data.flow.report import DataReport
from modules.data.flow.stages import AssignBuckets, CacheLatents, CollectMedia, PlanWindows, ProbeMedia
from modules.data.sources.concepts import Concept
from modules.data.sources.demo_data import DemoClip, write_clip
from modules.util.errors import run_script
from modules.wan.loading.loader import WanModelLoader
from modules.wan.tiny_models import write_tiny_model
from modules.wan.training.data_loader import wan_video_latents

# A VAE with the real structure and enough width that encoding, not bookkeeping, is the work being compared.
VAE = dict(base_dim=32, num_res_blocks=2, dim_mult=(1, 2, 2, 2))
SHAPES = ["circle", "square"]


def write_clips(folder: Path, count: int, resolution: int, frames: int) -> None:
    for index in range(count):
        # Varied sizes and frame rates, as real sets have: each needs resampling and a resize.
        width, height = (resolution * 3 // 2, resolution) if index % 2 else (resolution, resolution * 4 // 3)
        fps = (24, 30, 25)[index % 3]
        write_clip(
            DemoClip(f"clip{index}", SHAPES[index % 2], "red", "blue", width, height, frames * fps // 24 + 4, fps),
            folder,
        )


def build_stages(settings: dict, cache: DiskCache, encode, report: DataReport) -> Pipeline:
    return Pipeline(
        [
            CollectMedia(report),
            ProbeMedia(report),
            PlanWindows(report, settings["fps"], settings["frames"], "head", 1, 8, 1),
            AssignBuckets(settings["resolution"] ** 2, settings["pixel_multiple"]),
            CacheLatents(cache, encode, "benchmark", report),
        ],
        inputs=("concept",),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--frames", type=int, default=33, help="4n+1 frames per window")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_tiny_model("TI2V-5B", root / "model", vae_size=VAE)
        write_clips(root / "data", args.clips, args.resolution, args.frames)
        config = config_from_dict(
            {
                "model": {"base_path": str(root / "model"), "vae_dtype": "float32"},
                "data": {"concepts": [{"path": str(root / "data")}]},
            }
        )
        model = WanModelLoader().load(config)
        settings = {
            "fps": model.variant.fps,
            "frames": args.frames,
            "resolution": args.resolution,
            "pixel_multiple": model.variant.pixel_multiple,
        }
        encoded: list[torch.Tensor] = []

        def encode(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
            encoded.append(pixels)  # kept for the bare run: the exact tensors the pipeline encoded
            return wan_video_latents(model, pixels)

        concept = Concept(path=root / "data")
        pipeline_times, bare_times = [], []
        # Rounds alternate pipeline and bare runs so that anything else on the machine slows both alike;
        # round 0 is a warm-up (first-call allocations, thread pools) and is not counted.
        for round_index in range(args.rounds + 1):
            encoded.clear()
            pipeline = build_stages(settings, DiskCache(root / f"cache{round_index}"), encode, DataReport())
            start = time.perf_counter()
            pipeline.run([{"concept": concept}])
            pipeline_seconds = time.perf_counter() - start
            start = time.perf_counter()
            for pixels in encoded:
                wan_video_latents(model, pixels)
            bare_seconds = time.perf_counter() - start
            if round_index:
                pipeline_times.append(pipeline_seconds)
                bare_times.append(bare_seconds)
    pipeline_seconds, bare_seconds = statistics.median(pipeline_times), statistics.median(bare_times)
    shapes = sorted({tuple(p.shape[2:]) for p in encoded})
    print(
        f"torch {torch.__version__}; threads {torch.get_num_threads()}; {len(encoded)} windows, shapes (F, H, W) "
        f"{shapes}"
    )
    print(
        f"pipeline (probe + decode + resize + encode + write), median of {len(pipeline_times)}: "
        f"{pipeline_seconds:.2f} s"
    )
    print(f"bare VAE encode of the same frames, median of {len(bare_times)}:           {bare_seconds:.2f} s")
    print(f"cache build ratio: {pipeline_seconds / bare_seconds:.3f} (goal <= 1.2)")


if __name__ == "__main__":
    sys.exit(run_script(main))
