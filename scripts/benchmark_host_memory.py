"""Host memory: the peak resident memory of a process (VmHWM after a reset, plus pinned bytes) per phase, measured
on this machine and compared with the host-memory plan (modules/memory/host.py).

Each case runs in a fresh process (a process that wrote the files already holds their memory). An A14B expert is
built at the real width (5120, FFN 13824) and reduced depth (`--depths`, of 40 blocks), written to disk in the
real formats with random weights, one tensor at a time; the per-block slope between the depths is extrapolated to
40 blocks. Cases:

- load-folder: fp8 storage from a bf16 diffusers folder in two shards, streamed (the loader's path now);
- load-folder-old: the same through from_pretrained into bf16, then quantised (the path before streaming);
- load-single: fp8 storage from an fp8_scaled ComfyUI single file;
- two-processes: two processes loading the same single file at once (the sum of both peaks over one's);
- two-processes-mapped: the same with memory.map_weights (views of the file's mapping), each process then reading
  every weight (as the swapped blocks and the inactive expert are read in training) and measured while both are
  alive: anonymous memory per process from /proc/PID/smaps_rollup, the file's pages from its smaps entries (Pss:
  shared pages split between the processes, so their sum counts them once); machine total over one process's;
- train-swap / train-swap-copied: both experts from two fp8_scaled files (mapped, or read into the process's own
  memory), the 24 GB preset's share of swapped blocks (24 of 40, scaled to the depth) on both with the bounded
  staging forced on, one forward of each expert at the real width (16 tokens): anonymous memory and mapped pages
  against the plan's terms;
- staging-memcpy: the extra host copy of staging, measured: an fp8 FFN matrix of A14B (70.8 MB) copied from
  ordinary memory and from a file mapping into a staging buffer (GB/s);
- encoders: UMT5 at the real width (4096, FFN 10240; 2 of 24 layers, 32k vocabulary) resident, then released:
  how much of it leaves the process.
- load-int8 / load-int8-old: int8 storage from the bf16 folder, quantised linear by linear as it is read (the
  loader's path now) / read whole in bf16 and then quantised (the path before); bitsandbytes' CPU backend.
  load-nf4: the same streamed path into nf4 (bitsandbytes' CPU quantiser). Its peak grows faster per block than
  the stored model through glibc's heap (MALLOC_MMAP_THRESHOLD_=1048576 in the environment takes that out).
- ti2v-load / ti2v-load-copied / ti2v-train / ti2v-train-copied: the real-shaped TI2V-5B (30 blocks, `--ti2v-blocks`
  to test smaller), a bf16 diffusers folder in three shards (~10 GB in a temp dir, written once for all four),
  loaded with the 24 GB preset (bf16 storage) through WanModelLoader, mapped (memory.map_weights, the default) or
  not (from_pretrained); -train then attaches the preset's LoRA through WanLoRASetup and runs one predict + loss +
  backward + optimizer step on the CPU at 8 latent tokens. Compared with the host plan's phases on the CPU and,
  for training, the GPU plan's training terms at that token count (on the CPU they are host memory too).
- caching: the caching phase as a run goes through it before loading the transformer: that UMT5 slice (bf16) and
  the real A14B VAE (Wan 2.1, float32) read from part folders on first use, a few tiny clips, their captions and a
  sample prompt encoded, both released; the peak against the plan's caching phase at that depth.

Pinned bytes are 0 here (no CUDA: nothing is page-locked); on a GPU machine the plan adds the swap's staging window
and the offloaded activations. Results: docs/benchmarks.md "Host memory".

    python scripts/benchmark_host_memory.py [--depths 2 4] [--cases load-folder load-single ...]
"""

import argparse
import dataclasses
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import _repo_path  # noqa: F401
import torch
from benchmark_single_file_load import peak_rss, reset_peak_rss, write_random_file

from modules.memory.phases import GIB, expert_bytes
from modules.util.errors import run_script
from modules.util.resources import MODEL_CONFIGS_DIR
from modules.wan.loading.detection import read_json
from modules.wan.loading.part_load import build_empty
from modules.wan.loading.single_file_writer import write_streamed

REPO = Path(__file__).resolve().parent.parent

CASES = (
    "load-folder",
    "load-folder-old",
    "load-single",
    "two-processes",
    "two-processes-mapped",
    "train-swap",
    "train-swap-copied",
    "staging-memcpy",
    "encoders",
)
CASES += ("caching", "load-int8", "load-int8-old", "load-nf4")  # measured by caching_rows and int8_rows
CASES += ("ti2v-load", "ti2v-load-copied", "ti2v-train", "ti2v-train-copied")  # by ti2v_rows
SWAP_SHARE = 24 / 40  # the A14B 24 GB preset's memory.blocks_to_swap
REAL_BLOCKS = 40


def a14b_config(depth: int) -> dict:
    return {**read_json(MODEL_CONFIGS_DIR / "transformer_T2V-A14B.json"), "num_layers": depth}


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def write_folder(folder: Path, config: dict, shards: int = 2) -> Path:
    """A bf16 diffusers transformer folder in `shards` shards with an index, written tensor by tensor."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanTransformer3DModel", **config}))
    empty = build_empty("transformer", config)
    names = {n: (torch.bfloat16, tuple(p.shape)) for n, p in empty.state_dict().items()}
    keys = list(names)
    cut = [len(keys) * i // shards for i in range(shards + 1)]
    parts = {
        f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors": keys[cut[i] : cut[i + 1]]
        for i in range(shards)
    }
    generator = torch.Generator().manual_seed(0)

    def make(name, dtype, shape):
        return torch.randn(shape, generator=generator) * 0.02

    weight_map = {}
    for file, part in parts.items():
        write_streamed(folder / file, {k: names[k] for k in part}, make)
        weight_map.update({k: file for k in part})
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def smaps_of(path: Path | None = None) -> dict[str, int]:
    """This process's memory in bytes: smaps_rollup's fields, or (with `path`) the summed fields of its mappings."""
    if path is None:
        lines = Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]
    else:
        lines, inside = [], False
        for line in Path("/proc/self/smaps").read_text().splitlines():
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
                inside = line.rstrip().endswith(str(path))
            elif inside:
                lines.append(line)
    totals: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[0].endswith(":") and parts[2] == "kB":
            totals[parts[0][:-1]] = totals.get(parts[0][:-1], 0) + int(parts[1]) * 1024
    return totals


def touch_every_page(module: torch.nn.Module) -> None:
    """Read one byte of every page of every tensor (what using the weights does to a mapping), without a copy."""
    for tensor in [*module.parameters(), *module.buffers()]:
        flat = tensor.detach().reshape(-1).view(torch.uint8)
        int(flat[::4096].sum()) if flat.numel() else None


# ---- what a child process measures -------------------------------------------------------------------------------
def child(case: str, path: str, depth: int) -> dict:
    import psutil

    from modules.module.fp8_linear import convert_to_fp8_storage
    from modules.wan.loading.file_detection import detect_single_file
    from modules.wan.loading.part_folder import check_part_folder, load_part_folder
    from modules.wan.loading.part_load import load_folder_streamed, load_part_from_file

    config = a14b_config(depth)
    build_empty("transformer", config)  # diffusers' lazy imports before the baseline
    gc.collect()
    reset_peak_rss()
    baseline = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if case == "load-folder":
        folder = Path(path)
        model = load_folder_streamed(folder, check_part_folder(folder.parent, folder.name), config, torch.float8_e4m3fn)
    elif case == "load-folder-old":
        from diffusers import WanTransformer3DModel

        model = load_part_folder(Path(path).parent, Path(path).name, WanTransformer3DModel, dtype=torch.bfloat16)
        convert_to_fp8_storage(model)
    elif case == "two-processes-mapped":
        anonymous = smaps_of()["Anonymous"]
        info = detect_single_file(Path(path), "transformer")
        model = load_part_from_file(info, config, torch.float8_e4m3fn, config_source="benchmark", map_weights=True)
        touch_every_page(model)
        print("ready", flush=True)
        sys.stdin.readline()  # both processes hold the weights now
        mapped = smaps_of(Path(path))
        result = {"anonymous": smaps_of()["Anonymous"] - anonymous, "file_rss": mapped.get("Rss", 0),
                  "file_pss": mapped.get("Pss", 0), "peak": peak_rss() - baseline}  # fmt: skip
        print(json.dumps(result), flush=True)
        sys.stdin.readline()  # alive until the others have measured too
        return result
    else:  # load-single, two-processes
        info = detect_single_file(Path(path), "transformer")
        model = load_part_from_file(info, config, torch.float8_e4m3fn, config_source="benchmark")
    seconds = time.perf_counter() - start
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    stored = sum(t.numel() * t.element_size() for t in tensors)
    return {"baseline": baseline, "peak": peak_rss(), "stored": stored, "seconds": seconds, "pinned": 0}


def train_swap_child(high: str, low: str, depth: int, mapped: bool) -> dict:
    """Both experts from their fp8_scaled files, the preset's share of blocks swapped through forced staging, one
    forward of each at the real width: anonymous memory and the files' resident pages afterwards."""
    from modules.module.block_swap import BlockSwapper
    from modules.module.mapped_weights import mapped_bytes
    from modules.wan.loading.file_detection import detect_single_file
    from modules.wan.loading.part_load import load_part_from_file

    config = a14b_config(depth)
    build_empty("transformer", config)
    gc.collect()
    reset_peak_rss()
    anonymous, baseline = smaps_of()["Anonymous"], rss()
    experts, swappers = [], []
    swap = max(1, round(depth * SWAP_SHARE))
    for path in (high, low):
        info = detect_single_file(Path(path), "transformer")
        expert = load_part_from_file(info, config, torch.float8_e4m3fn, config_source="benchmark", map_weights=mapped)
        expert.requires_grad_(False)
        swappers.append(BlockSwapper(expert.blocks, range(depth - swap, depth), staging=True))
        experts.append(expert)
    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        hidden_states=torch.randn(1, config["in_channels"], 1, 2, 2, generator=generator, dtype=torch.bfloat16),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 4, config["text_dim"], generator=generator, dtype=torch.bfloat16),
        return_dict=False,
    )
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for expert in experts:  # the active expert runs; both experts' weights are read once
            expert(**inputs)
            touch_every_page(expert)
    files = [smaps_of(Path(p)) for p in (high, low)]
    stored = sum(sum(t.numel() * t.element_size() for t in {id(t): t for t in [*e.parameters(), *e.buffers()]}.values())
                 for e in experts)  # fmt: skip
    return {
        "anonymous": smaps_of()["Anonymous"] - anonymous,
        "file_rss": sum(f.get("Rss", 0) for f in files),
        "peak": peak_rss() - baseline,
        "stored": stored,
        "mapped_tensor_bytes": sum(mapped_bytes(e)[0] for e in experts),
        "staging": swappers[0].staging.nbytes,
        "shared_staging": swappers[0].staging is swappers[1].staging,
        "swapped": swap,
    }


def staging_memcpy_child(path: str) -> dict:
    """GB/s of copying an A14B FFN matrix (fp8) into a staging slot, from ordinary memory and from a mapping."""
    from modules.module.block_swap import StagingBuffer
    from modules.module.mapped_weights import FileMapping

    size = 5120 * 13824
    staging = StagingBuffer(size, 2, pin=False)
    own = torch.randint(0, 255, (size,), dtype=torch.uint8)
    mapped = FileMapping(path).tensor(4096, 4096 + size, torch.uint8, (size,))
    result = {}
    for name, source in (("ordinary", own), ("mapped", mapped)):
        staging.stage([source])  # warm: pages resident, slot touched
        times = []
        for _ in range(7):
            start = time.perf_counter()
            staging.stage([source])
            times.append(time.perf_counter() - start)
        result[name] = size / sorted(times)[len(times) // 2] / 1e9
    return {"bytes": size, **result}


def encoders_child() -> dict:
    """UMT5 at the real width, reduced depth: resident memory with it and after WanModel's release."""
    from transformers import UMT5Config, UMT5EncoderModel

    from modules.wan.encoder_parts import EncoderPart

    config = UMT5Config(vocab_size=32128, d_model=4096, d_ff=10240, num_layers=2, num_heads=64, d_kv=64)
    part = EncoderPart("text_encoder", load=lambda: UMT5EncoderModel(config).to(torch.bfloat16))
    gc.collect()
    before = rss()
    module = part.get()
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    del module
    loaded = rss()
    part.release()
    return {"before": before, "loaded": loaded, "after": rss(), "size": size}


# ---- the caching phase (UMT5 and the VAE alone, before any expert loads) -----------------------------------------
UMT5_SLICE = {"vocab_size": 32128, "d_model": 4096, "d_ff": 10240, "num_layers": 2, "num_heads": 64, "d_kv": 64}
CACHING_DATA = {"resolution": 64, "frames": 9, "clips": 3}  # tiny clips: on a GPU the VAE's activations are not host


def umt5_config(layers: int | None):
    """UMT5-XXL as WAN ships it (real width and 256k vocabulary) at `layers` of its 24; None: the 2-layer slice with
    a 32k vocabulary measured first."""
    from transformers import UMT5Config

    if layers is None:
        return UMT5Config(**UMT5_SLICE)
    real = {
        k: v for k, v in read_json(MODEL_CONFIGS_DIR / "text_encoder_umt5-xxl.json").items() if k != "architectures"
    }
    return UMT5Config(**{**real, "num_layers": layers})


def write_caching_parts(work: Path, umt5_layers: int | None = None) -> None:
    """A tiny T2V-A14B folder (tokenizer, configs) and, beside it, UMT5 at the real width (`umt5_config`) and the
    real Wan 2.1 VAE as part folders with random weights, and a few tiny clips with captions."""
    from diffusers import AutoencoderKLWan
    from transformers import UMT5EncoderModel

    from modules.data.sources.demo_data import DemoClip, write_clip
    from modules.wan.tiny_models import write_tiny_model

    write_tiny_model("T2V-A14B", work / "tiny")
    torch.manual_seed(0)
    # Built in bf16 (the real vocabulary's embedding alone is 2 GiB): the writer never holds a float32 copy.
    umt5 = UMT5EncoderModel._from_config(umt5_config(umt5_layers), torch_dtype=torch.bfloat16)
    umt5.save_pretrained(work / "text_encoder")
    del umt5
    vae = {k: v for k, v in read_json(MODEL_CONFIGS_DIR / "vae_wan2.1.json").items() if not k.startswith("_")}
    AutoencoderKLWan(**vae).save_pretrained(work / "vae")
    size = CACHING_DATA["resolution"]
    for index in range(CACHING_DATA["clips"]):
        path = write_clip(DemoClip(f"clip{index}", "circle", "red", "blue", size, size, 17, 24), work / "clips")
        path.with_suffix(".txt").write_text(f"a red circle moves, take {index}")


def caching_child(work: str) -> dict:
    """The run's caching phase (WanBaseDataLoader.prepare on an encoders-only model, as GenericTrainer runs it
    before the experts load): the peak over the baseline, and what is left after the encoders are released."""
    from diffusers import AutoencoderKLWan
    from transformers import UMT5EncoderModel

    from modules.config.loading import load_config
    from modules.wan.loading.loader import load_wan_model
    from modules.wan.loading.part_folder import load_part_folder
    from modules.wan.training.data_loader import WanBaseDataLoader

    work = Path(work)
    config = load_config(
        REPO / "training_presets" / "demo_t2v_a14b_lora.json",
        [
            f"model.base_path={work / 'tiny'}",
            "model.text_encoder_dtype=bfloat16",
            f'data.concepts=[{{"path": "{work / "clips"}", "caption_source": "txt"}}]',
            f"data.resolution={CACHING_DATA['resolution']}",
            f"data.frames={CACHING_DATA['frames']}",
            "data.max_windows_per_video=1",
            f"data.cache_dir={work / 'cache'}",
            'sampling.samples=[{"prompt": "a red circle moves", "negative_prompt": "blurry"}]',
        ],
    )
    model = load_wan_model(work / "tiny", text_encoder_dtype=torch.bfloat16, encoders_only=True)
    parts = {"text_encoder": (UMT5EncoderModel, torch.bfloat16), "vae": (AutoencoderKLWan, torch.float32)}
    for name, (cls, dtype) in parts.items():
        model.set_encoder_source(name, lambda n=name, c=cls, d=dtype: load_part_folder(work, n, c, dtype=d), dtype)
    gc.collect()
    reset_peak_rss()
    baseline = rss()
    data = WanBaseDataLoader()
    data.prepare(model, config, torch.device("cpu"))
    sizes = {
        name: sum(t.numel() * t.dtype.itemsize for t in load_part_folder(work, name, cls, dtype=dtype).parameters())
        for name, (cls, dtype) in parts.items()
    }
    return {"baseline": baseline, "peak": peak_rss(), "after": rss(), **sizes, "latents": data.stats.videos_encoded,
            "captions": data.stats.texts_encoded, "prompts": data.stats.prompts_encoded}  # fmt: skip


def caching_rows(umt5_layers: list[int] | None = None) -> list[dict]:
    """The caching case: parts written here, measured in a fresh process, compared with the plan's caching phase
    (UMT5 + VAE + decoded windows; the process itself is in the baseline). Without `umt5_layers` the 32k-vocabulary
    slice; with them the real UMT5 at those depths, whose per-layer slope report_caching extrapolates to 24."""
    from modules.memory.host import _decoded_window_bytes

    rows = []
    for layers in umt5_layers or [None]:
        with tempfile.TemporaryDirectory() as tmp:
            write_caching_parts(Path(tmp), layers)
            r = run_child("caching", tmp)
        plan = r["text_encoder"] + r["vae"] + _decoded_window_bytes(CACHING_DATA["resolution"], CACHING_DATA["frames"])
        increase, left = r["peak"] - r["baseline"], r["after"] - r["baseline"]
        rows.append({"case": "caching", "umt5_layers": layers, **r, "increase": increase, "plan": plan, "left": left})
    return rows


def planned_caching_bytes() -> float:
    """The plan's caching phase for the real A14B (UMT5-XXL's 24 layers, the VAE, two decoded windows of the clips
    measured here) that must stay resident, less the process term (the measurement starts after every import)."""
    from modules.config.loading import load_config
    from modules.memory.host import build_host_plan
    from modules.planning import memory_facts_for

    config = load_config(
        REPO / "training_presets" / "wan22_t2v_a14b_lora_24gb.json",
        [f"data.resolution={CACHING_DATA['resolution']}", f"data.frames={CACHING_DATA['frames']}",
         "model.text_encoder_dtype=bfloat16"],
    )  # fmt: skip
    # The measured UMT5 is a bf16 folder loaded in bf16, as the Wan-AI repos ship it: the plan for that source.
    facts = dataclasses.replace(memory_facts_for(config), text_encoder_source_dtype="bfloat16")
    phase = next(p for p in build_host_plan(config, facts, 1).phases if p.name.startswith("caching"))
    return phase.per_process() - sum(v for k, v in phase.anonymous.items() if k.startswith("process"))


# ---- the real-shaped TI2V-5B: the 24 GB preset's bf16 folder, loaded and trained as a run does --------------------
TI2V_CASES = ("ti2v-load", "ti2v-load-copied", "ti2v-train", "ti2v-train-copied")
TI2V_PRESET = REPO / "training_presets" / "wan22_ti2v_5b_lora_24gb.json"
TI2V_SHARDS = 3  # a sharded folder like Wan-AI's (the loader reads any count through the index)
# A tiny token count: latents of 2 x 4 x 4 (8 tokens after the 1x2x2 patch; 64x64 px, 5 frames); the prompt
# padded to UMT5's 512 tokens as the cache stores it.
TI2V_LATENTS, TI2V_TEXT_TOKENS, TI2V_DATA = (1, 48, 2, 4, 4), 512, ("data.resolution=64", "data.frames=5")


def ti2v_config(blocks: int = 30) -> dict:
    return {**read_json(MODEL_CONFIGS_DIR / "transformer_TI2V-5B.json"), "num_layers": blocks}


def ti2v_run_config(work: Path, mapped: bool):
    """The preset with its model read from here: tokenizer and encoders from a tiny TI2V-5B folder (they are not
    read in these phases), the transformer from the real-shaped bf16 folder; on the CPU."""
    from modules.config.loading import load_config

    overrides = [f"model.base_path={work / 'tiny'}", f"model.transformer_path={work / 'transformer'}"]
    overrides += ["training.device=cpu", f"memory.map_weights={str(mapped).lower()}", *TI2V_DATA]
    return load_config(TI2V_PRESET, overrides)


def files_resident(paths: list[Path]) -> int:
    """Resident pages of these files' mappings in this process (Rss of their smaps entries)."""
    return sum(smaps_of(p).get("Rss", 0) for p in paths)


def ti2v_child(case: str, work: str) -> dict:
    """Load through WanModelLoader (the trainer's loader) and, for ti2v-train, the preset's LoRA through
    WanLoRASetup, the optimizer from its config and one predict + loss + backward + optimizer step on the CPU."""
    import psutil

    from modules.base.model_setup import TrainProgress
    from modules.module.mapped_weights import mapped_bytes
    from modules.trainer.optim.optimizer_registry import create_optimizer
    from modules.trainer.state.rng_state import seed_all
    from modules.wan.loading.loader import WanModelLoader
    from modules.wan.training.lora_setup import WanLoRASetup

    work, mapped = Path(work), not case.endswith("-copied")
    config = ti2v_run_config(work, mapped)
    shards = sorted((work / "transformer").glob("*.safetensors"))
    build_empty("transformer", ti2v_config(1))  # diffusers' lazy imports before the baseline
    gc.collect()
    reset_peak_rss()
    anonymous, baseline = smaps_of()["Anonymous"], psutil.Process().memory_info().rss
    start = time.perf_counter()
    model = WanModelLoader().load(config)
    seconds = time.perf_counter() - start
    loaded = {"peak": peak_rss() - baseline, "anonymous": smaps_of()["Anonymous"] - anonymous,
              "file_rss": files_resident(shards), "seconds": seconds,
              "stored": sum(t.numel() * t.element_size() for t in model.transformer.state_dict().values()),
              "mapped_tensor_bytes": mapped_bytes(model.transformer)[0]}  # fmt: skip
    if case.startswith("ti2v-load"):
        return {**loaded, "baseline": baseline}
    reset_peak_rss()
    start = time.perf_counter()
    seed_all(config.training.seed)
    setup = WanLoRASetup()
    setup.setup_model(model, config)
    setup.setup_train_device(model, config, torch.device("cpu"))
    groups = setup.parameter_groups(model, config)
    optimizer = create_optimizer(groups, config.training)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "latents": torch.randn(TI2V_LATENTS, generator=generator),
        "text_embeds": torch.randn(1, TI2V_TEXT_TOKENS, 4096, generator=generator, dtype=torch.bfloat16),
    }
    prediction = setup.predict(model, batch, config, TrainProgress(), generator)
    setup.calculate_loss(model, batch, prediction, config).backward()
    optimizer.step()
    trained = [p for g in groups for p in g["params"]]
    return {
        "baseline": baseline,
        "load": loaded,
        "peak": peak_rss() - baseline,
        "anonymous": smaps_of()["Anonymous"] - anonymous,
        "file_rss": files_resident(shards),
        "stored": loaded["stored"],
        "lora": sum(p.numel() * p.element_size() for p in trained),
        "seconds": time.perf_counter() - start,
    }


def ti2v_plans(mapped: bool) -> dict[str, float]:
    """The plan's phases for the preset on the CPU (gpu=False terms), less the process (in the baseline here),
    and the GPU plan's training terms at this token count, which a CPU run holds in RAM too."""
    import dataclasses

    from modules.config.loading import load_config
    from modules.memory.host import PROCESS_BYTES, build_host_plan
    from modules.planning import plan_memory
    from modules.wan.memory_facts import memory_facts

    config = load_config(TI2V_PRESET, ["training.device=cpu", f"memory.map_weights={str(mapped).lower()}", *TI2V_DATA])
    # The preset names a hub id (planned as copies); a local bf16 folder is mapped: plan from its header's dtype.
    facts = dataclasses.replace(memory_facts(config), source_dtype="bfloat16")
    host = build_host_plan(config, facts, cache_first=True)
    device = plan_memory(config, facts=facts).phases
    training = next(p for p in device if p.name == "training")
    on_device = {k: v for k, v in training.parts.items() if "CUDA" not in k}
    return {
        "loading": host.phase("loading the experts").per_process() - PROCESS_BYTES["cpu"],
        "loading_reclaimable": sum(host.phase("loading the experts").reclaimable.values()),
        "training_host": host.phase("training").per_process() - PROCESS_BYTES["cpu"],
        "training_device": sum(on_device.values()),
        "device_terms": on_device,
    }


def ti2v_rows(cases: list[str], blocks: int) -> list[dict]:
    """The folder written once (tensor by tensor, with a tiny TI2V-5B beside it for the tokenizer), every case
    in its own fresh process, one at a time; the folder is deleted at the end."""
    from modules.wan.tiny_models import write_tiny_model

    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        write_tiny_model("TI2V-5B", work / "tiny")
        write_folder(work / "transformer", ti2v_config(blocks), TI2V_SHARDS)
        written = sum(f.stat().st_size for f in (work / "transformer").glob("*.safetensors"))
        print(f"ti2v: wrote {written / GIB:.2f} GiB in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        for case in (c for c in TI2V_CASES if c in cases):
            r = run_child(case, str(work))
            rows.append({"case": case, "blocks": blocks, "on_disk": written, **r,
                         "plan": ti2v_plans(not case.endswith("-copied"))})  # fmt: skip
    return rows


def report_ti2v(rows: list[dict]) -> None:
    mib = 2**20
    for r in (r for r in rows if r["case"] in TI2V_CASES):
        plan = r["plan"]
        head = f"{r['case']} ({r['blocks']} blocks, {r['stored'] / mib:.0f} MiB stored):"
        if r["case"].startswith("ti2v-load"):
            print(
                f"{head} peak +{r['peak'] / mib:.0f} MiB (anon +{r['anonymous'] / mib:.0f}, file pages "
                f"{r['file_rss'] / mib:.0f}, {r['mapped_tensor_bytes'] / mib:.0f} MiB of tensors on our mapping) in "
                f"{r['seconds']:.0f} s; plan's loading phase less the process "
                f"{plan['loading'] / mib:.0f} MiB (+{plan['loading_reclaimable'] / mib:.0f} reclaimable mapped); "
                f"plan/measured {plan['loading'] / r['peak']:.2f}"
            )
        else:
            total = plan["training_host"] + plan["training_device"]
            print(
                f"{head} training peak +{r['peak'] / mib:.0f} MiB (anon +{r['anonymous'] / mib:.0f}, file pages "
                f"{r['file_rss'] / mib:.0f}; LoRA {r['lora'] / mib:.0f} MiB) in {r['seconds']:.0f} s; host plan "
                f"{plan['training_host'] / mib:.0f} MiB + device terms {plan['training_device'] / mib:.0f} MiB "
                f"({', '.join(f'{k} {v / mib:.0f}' for k, v in plan['device_terms'].items())}): plan/measured "
                f"{total / r['peak']:.2f}"
            )


# ---- int8/nf4 storage while loading (bitsandbytes quantises each linear as it is read) ----------------------------
QUANTISED_CASES = ("load-int8", "load-int8-old", "load-nf4")


def quantised_bytes(model: torch.nn.Module) -> int:
    """Parameters and buffers, plus nf4's quantisation state (its absmax per 64 weights is no parameter)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        for t in (getattr(state, "absmax", None), getattr(getattr(state, "state2", None), "absmax", None)):
            if isinstance(t, torch.Tensor):
                tensors[id(t)] = t
    return sum(t.numel() * t.element_size() for t in tensors.values())


def int8_child(case: str, path: str, depth: int) -> dict:
    """load-int8 / load-nf4 (streamed) or load-int8-old (bf16 whole, then quantised)."""
    import psutil
    from diffusers import WanTransformer3DModel

    from modules.module.bnb_linear import convert_to_quantised_storage, quantised_linear
    from modules.wan.loading.part_folder import check_part_folder, load_part_folder
    from modules.wan.loading.part_load import load_folder_streamed
    from modules.wan.loading.storage import quantiser_for

    config, folder = a14b_config(depth), Path(path)
    build_empty("transformer", config)
    kind = case.split("-")[1]
    quantised_linear(torch.nn.Linear(64, 64), kind, torch.bfloat16)  # bitsandbytes' imports before the baseline
    gc.collect()
    reset_peak_rss()
    baseline = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if case != "load-int8-old":
        # The loader's own quantiser (it trims the heap after each linear), for this storage and bf16 compute.
        settings = SimpleNamespace(
            model=SimpleNamespace(transformer_dtype=kind), training=SimpleNamespace(train_dtype="bfloat16")
        )
        quantise = quantiser_for(settings)
        shards = check_part_folder(folder.parent, folder.name)
        model = load_folder_streamed(folder, shards, config, torch.bfloat16, replace_linear=quantise)
    else:
        model = load_part_folder(folder.parent, folder.name, WanTransformer3DModel, dtype=torch.bfloat16)
        convert_to_quantised_storage(model, "int8", torch.bfloat16)
    seconds = time.perf_counter() - start
    return {"baseline": baseline, "peak": peak_rss(), "stored": quantised_bytes(model), "seconds": seconds, "pinned": 0}


def planned_int8_load_bytes(depth: int, kind: str = "int8") -> float:
    from modules.memory.host import _load_transient
    from modules.wan.memory_facts import transformer_facts

    facts = transformer_facts(json.dumps(a14b_config(depth)), False)
    return expert_bytes(facts, kind) + _load_transient(facts, kind, "bfloat16")


def int8_rows(depths: list[int], cases: list[str]) -> list[dict]:
    rows = []
    for depth in depths:
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_folder(Path(tmp) / "transformer", a14b_config(depth))
            for case in (c for c in QUANTISED_CASES if c in cases):
                r = run_child(case, str(folder), str(depth))
                increase = r["peak"] - r["baseline"]
                plan = planned_int8_load_bytes(depth, case.split("-")[1])
                rows.append({"case": case, "depth": depth, "increase": increase, "stored": r["stored"],
                             "ratio": increase / r["stored"], "plan": plan, "seconds": r["seconds"]})  # fmt: skip
    return rows


def run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the measuring process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_two(path: Path, depth: int) -> list[dict]:
    command = [sys.executable, __file__, "--child", "two-processes", str(path), str(depth)]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    return [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]


def run_together(path: Path, depth: int, count: int) -> list[dict]:
    """`count` processes mapping one file, measured while all of them hold its weights."""
    command = [sys.executable, __file__, "--child", "two-processes-mapped", str(path), str(depth)]
    children = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(count)
    ]
    for c in children:
        while c.stdout.readline().strip() != "ready":
            if c.poll() is not None:
                raise SystemExit("a measuring process ended before it was ready")
    for c in children:  # all measure while all are alive, and stay until every one has measured
        c.stdin.write("go\n")
        c.stdin.flush()
    results = [json.loads(c.stdout.readline()) for c in children]
    for c in children:
        c.stdin.close()
        c.wait()
    return results


# ---- the plan's figures ------------------------------------------------------------------------------------------
def planned_load_bytes(depth: int) -> float:
    """The plan's loading phase for one expert of `depth` blocks: fp8 storage plus one tensor's read and cast."""
    from modules.memory.host import _load_transient
    from modules.wan.memory_facts import transformer_facts

    facts = transformer_facts(json.dumps(a14b_config(depth)), False)
    return expert_bytes(facts, "float8_e4m3fn") + _load_transient(facts, "float8_e4m3fn")


def planned_experts(depth: int) -> float:
    """The plan's bytes of both fp8 experts of `depth` blocks: its mapped (must stay + reclaimable) and GPU terms."""
    from modules.wan.memory_facts import transformer_facts

    return 2 * expert_bytes(transformer_facts(json.dumps(a14b_config(depth)), False), "float8_e4m3fn")


def extrapolate(by_depth: dict[int, float]) -> float:
    """The value at 40 blocks from the per-block slope between the smallest and the largest depth measured."""
    low, high = min(by_depth), max(by_depth)
    slope = (by_depth[high] - by_depth[low]) / (high - low)
    return by_depth[high] + (REAL_BLOCKS - high) * slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--ti2v-blocks", type=int, default=30, help="TI2V-5B's depth for the ti2v cases (30: real)")
    parser.add_argument(
        "--umt5-layers", type=int, nargs="+", help="caching with the real UMT5 at these depths, extrapolated to 24"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind = args.child[0]
        if kind in QUANTISED_CASES:
            result = int8_child(kind, args.child[1], int(args.child[2]))
        elif kind in TI2V_CASES:
            result = ti2v_child(kind, args.child[1])
        elif kind == "caching":
            result = caching_child(args.child[1])
        elif kind == "encoders":
            result = encoders_child()
        elif kind == "train-swap":
            result = train_swap_child(args.child[1], args.child[2], int(args.child[3]), bool(int(args.child[4])))
        elif kind == "staging-memcpy":
            result = staging_memcpy_child(args.child[1])
        else:
            result = child(*args.child[:2], int(args.child[2]))
        print(json.dumps(result))
        return
    rows = []
    for depth in args.depths:
        config = a14b_config(depth)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            folder = single = None
            if {"load-folder", "load-folder-old"} & set(args.cases):
                folder = write_folder(tmp / "transformer", config)
            singles = {"load-single", "two-processes", "two-processes-mapped", "train-swap", "train-swap-copied"}
            if singles & set(args.cases):
                single = write_random_file(tmp / "wan2.2_t2v_high_noise_fp8_scaled.safetensors", config, "fp8_scaled")
            if {"train-swap", "train-swap-copied"} & set(args.cases):
                low = write_random_file(tmp / "wan2.2_t2v_low_noise_fp8_scaled.safetensors", config, "fp8_scaled")
            for case in args.cases:
                if case in ("encoders", "staging-memcpy", "caching", *QUANTISED_CASES, *TI2V_CASES):
                    continue
                if case == "two-processes-mapped":
                    one, two = run_together(single, depth, 1)[0], run_together(single, depth, 2)
                    alone = one["anonymous"] + one["file_rss"]
                    machine = sum(r["anonymous"] + r["file_pss"] for r in two)
                    rows.append({"case": case, "depth": depth, "one": alone, "machine": machine,
                                 "ratio_to_one": machine / alone, "anonymous": [r["anonymous"] for r in two],
                                 "file_rss": two[0]["file_rss"], "pss": [r["file_pss"] for r in two]})  # fmt: skip
                    continue
                if case.startswith("train-swap"):
                    mapped = case == "train-swap"
                    r = run_child("train-swap", str(single), str(low), str(depth), str(int(mapped)))
                    rows.append({"case": case, "depth": depth, **r})
                    continue
                if case == "load-folder-old" and depth != min(args.depths):
                    continue  # the old path is shown once: it needs the whole bf16 expert
                if case == "two-processes":
                    both = run_two(single, depth)
                    increase = sum(r["peak"] - r["baseline"] for r in both)
                    one = both[0]["peak"] - both[0]["baseline"]
                    rows.append({"case": case, "depth": depth, "increase": increase, "ratio_to_one": increase / one,
                                 "stored": both[0]["stored"], "seconds": max(r["seconds"] for r in both)})  # fmt: skip
                    continue
                r = run_child(case, str(folder if case.startswith("load-folder") else single), str(depth))
                increase = r["peak"] - r["baseline"]
                rows.append({"case": case, "depth": depth, "increase": increase, "stored": r["stored"],
                             "ratio": increase / r["stored"], "plan": planned_load_bytes(depth),
                             "seconds": r["seconds"]})  # fmt: skip
    if "staging-memcpy" in args.cases:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bytes.bin"
            path.write_bytes(torch.randint(0, 255, (5120 * 13824 + 8192,), dtype=torch.uint8).numpy().tobytes())
            rows.append({"case": "staging-memcpy", **run_child("staging-memcpy", str(path))})
    if set(QUANTISED_CASES) & set(args.cases):
        rows += int8_rows(args.depths, args.cases)
    if "caching" in args.cases:
        rows += caching_rows(args.umt5_layers)
    if set(TI2V_CASES) & set(args.cases):
        rows += ti2v_rows(args.cases, args.ti2v_blocks)
    if "encoders" in args.cases:
        r = run_child("encoders")
        rows.append({"case": "encoders", **r, "released_share": (r["loaded"] - r["after"]) / r["size"]})
    print(json.dumps(rows, indent=1))
    report(rows)


def report(rows: list[dict]) -> None:
    mib = 2**20
    print("\ncase                depth  increase MiB  stored MiB  ratio  plan MiB  plan/measured")
    for r in rows:
        skipped = ("encoders", "staging-memcpy", "two-processes-mapped", "caching", *QUANTISED_CASES, *TI2V_CASES)
        if r["case"] in skipped or r["case"].startswith("train-swap"):
            continue
        plan = r.get("plan")
        print(
            f"{r['case']:<19} {r['depth']:>5} {r['increase'] / mib:>13.0f} {r['stored'] / mib:>11.0f} "
            f"{r.get('ratio', r.get('ratio_to_one', 0)):>6.2f} {plan / mib if plan else 0:>9.0f} "
            f"{plan / r['increase'] if plan else 0:>14.2f}"
        )
    for case in ("load-folder", "load-single"):
        by_depth = {r["depth"]: r["increase"] for r in rows if r["case"] == case}
        if len(by_depth) > 1:
            at_40 = extrapolate(by_depth)
            stored = extrapolate({r["depth"]: r["stored"] for r in rows if r["case"] == case})
            plan = planned_load_bytes(REAL_BLOCKS)
            print(
                f"{case}: extrapolated to 40 blocks: {at_40 / GIB:.2f} GiB peak increase for {stored / GIB:.2f} GiB "
                f"stored (x{at_40 / stored:.3f}); plan {plan / GIB:.2f} GiB"
            )
    report_mapping(rows)
    for r in rows:
        if r["case"] == "encoders":
            resident, released = (r["loaded"] - r["before"]) / mib, (r["loaded"] - r["after"]) / mib
            print(
                f"encoders: UMT5 slice of {r['size'] / mib:.0f} MiB: resident +{resident:.0f} MiB, released "
                f"-{released:.0f} MiB ({r['released_share']:.0%} returned)"
            )

    report_caching(rows)
    report_int8(rows)
    report_ti2v(rows)


def report_caching(rows: list[dict]) -> None:
    caching = [r for r in rows if r["case"] == "caching"]
    by_layers = {r["umt5_layers"]: r for r in caching if r.get("umt5_layers")}
    if len(by_layers) > 1:
        (low, a), (high, b) = sorted(by_layers.items())[0], sorted(by_layers.items())[-1]
        per_layer = (b["increase"] - a["increase"]) / (high - low)
        at_24 = a["increase"] + per_layer * (24 - low)
        umt5_24 = a["text_encoder"] + (b["text_encoder"] - a["text_encoder"]) / (high - low) * (24 - low)
        plan = planned_caching_bytes()
        print(
            f"caching, real UMT5 extrapolated to 24 layers: +{at_24 / GIB:.2f} GiB peak (UMT5 {umt5_24 / GIB:.2f} GiB, "
            f"{per_layer / 2**20:.0f} MiB per layer); plan {plan / GIB:.2f} GiB (plan/measured {plan / at_24:.2f})"
        )
    for r in caching:
        mib = 2**20
        print(
            f"caching: UMT5 ({r.get('umt5_layers') or 'slice'}) {r['text_encoder'] / mib:.0f} MiB + VAE "
            f"{r['vae'] / mib:.0f} MiB, {r['latents']} "
            f"latents, {r['captions']} captions, {r['prompts']} prompts: peak +{r['increase'] / mib:.0f} MiB, plan "
            f"{r['plan'] / mib:.0f} MiB (plan/measured {r['plan'] / r['increase']:.2f}); after the release "
            f"+{r['left'] / mib:.0f} MiB left"
        )


def report_int8(rows: list[dict]) -> None:
    for case in ("load-int8", "load-nf4"):
        by_depth = {r["depth"]: r for r in rows if r["case"] == case}
        for depth, r in sorted(by_depth.items()):
            print(
                f"{case}, {depth} blocks: +{r['increase'] / 2**20:.0f} MiB for {r['stored'] / 2**20:.0f} MiB stored, "
                f"plan {r['plan'] / 2**20:.0f} MiB ({r['seconds']:.0f} s)"
            )
        if len(by_depth) > 1:
            at_40 = extrapolate({d: r["increase"] for d, r in by_depth.items()})
            stored = extrapolate({d: r["stored"] for d, r in by_depth.items()})
            plan = planned_int8_load_bytes(REAL_BLOCKS, case.split("-")[1])
            print(
                f"{case}: extrapolated to 40 blocks: {at_40 / GIB:.2f} GiB peak increase for {stored / GIB:.2f} GiB "
                f"stored (x{at_40 / stored:.3f}); plan {plan / GIB:.2f} GiB (plan/measured {plan / at_40:.2f})"
            )


def report_mapping(rows: list[dict]) -> None:
    mib = 2**20
    for r in rows:
        if r["case"] == "two-processes-mapped":
            print(
                f"two processes, mapped, {r['depth']} blocks: one alone {r['one'] / mib:.0f} MiB (anon + file pages); "
                f"both {r['machine'] / mib:.0f} MiB on the machine (anon {[round(a / mib) for a in r['anonymous']]} "
                f"+ file Pss {[round(p / mib) for p in r['pss']]}): x{r['ratio_to_one']:.3f} one process (goal 1.15)"
            )
        elif r["case"].startswith("train-swap"):
            print(
                f"{r['case']}, {r['depth']} blocks ({r['swapped']} swapped per expert): anon "
                f"+{r['anonymous'] / mib:.0f} MiB, file pages {r['file_rss'] / mib:.0f} MiB, peak "
                f"+{r['peak'] / mib:.0f} MiB, both experts stored "
                f"{r['stored'] / mib:.0f} MiB ({r['mapped_tensor_bytes'] / mib:.0f} mapped), staging "
                f"{r['staging'] / mib:.0f} MiB (one for both experts: {r['shared_staging']}); weights held "
                f"{(r['anonymous'] - r['staging'] + r['file_rss']) / mib:.0f} MiB, "
                f"plan {planned_experts(r['depth']) / mib:.0f}"
            )
        elif r["case"] == "staging-memcpy":
            print(
                f"staging memcpy of {r['bytes'] / 1e6:.1f} MB: {r['ordinary']:.2f} GB/s from ordinary memory, "
                f"{r['mapped']:.2f} GB/s from a mapping (pages resident)"
            )
    for case in ("train-swap", "train-swap-copied"):
        found = [r for r in rows if r["case"] == case]
        if len(found) > 1:
            at = {key: extrapolate({r["depth"]: r[key] for r in found}) for key in ("anonymous", "file_rss", "stored")}
            print(
                f"{case}: extrapolated to 40 blocks: anon {at['anonymous'] / GIB:.2f} GiB, file pages "
                f"{at['file_rss'] / GIB:.2f} GiB, both experts stored {at['stored'] / GIB:.2f} GiB"
            )


if __name__ == "__main__":
    sys.exit(run_script(main))
