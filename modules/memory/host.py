"""The host-memory plan: peak RAM of a run, phase by phase, beside the GPU plan (modules/planning.py).

    plan = build_host_plan(config, facts, processes=1)   # HostPlan
    plan.peak_gib(), plan.peak_phase()                   # 27.9, "training"
    plan.verdict(64)                                     # "fits 64 GB of RAM (27.9 GiB peak in training)"
    plan.least_change(32)                                # "cache first (scripts/cache.py), then ..." or None
    host_memory_summary(config, facts, processes)        # HostMemorySummary, for the window's memory hint

Each phase counts three kinds of host memory, because they behave differently: anonymous resident memory (the process's
own copies: weights in CPU memory, activations offloaded, buffers), pinned memory (page-locked staging for
host-to-device copies, which the kernel can never swap or drop: the swap's staging window and the offloaded activations,
both at their exact size, modules/module/host_buffer.py) and file-backed pages that must stay resident (weights mapped
from their file: shared by every process on the machine through the page cache; mapped pages a phase does not use, such
as the inactive expert's, are listed as reclaimable and left out of the peak). Several processes each hold their own
anonymous and pinned memory; mapped pages are counted once. The terms and what was measured: docs/presets.md "Host
memory".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from modules.memory.config_changes import with_changes
from modules.memory.facts import ModelFacts, TransformerFacts
from modules.memory.phases import DTYPE_BYTES, GIB, LINEAR_STORAGE_BYTES, block_bytes, expert_bytes
from modules.util.errors import UserError

# Python, torch, diffusers/transformers and, on a GPU machine, the CUDA runtime's host side: measured on this
# machine's CPU build (docs/benchmarks.md) plus the CUDA runtime's ~1 GiB of host memory on a GPU machine.
PROCESS_BYTES = {"cpu": 0.9 * GIB, "cuda": 1.9 * GIB}
# What the operating system and a desktop keep: a plan fits when its peak is under this share of the RAM.
USABLE_SHARE = 0.9
RAM_SIZES = (32, 64, 128)
SWAP_WINDOW = 2  # swapped blocks in flight (modules/module/block_swap.py's default window): the staging buffer
RAM_ENV = "WAN_TRAINER_RAM_GIB"  # the machine's RAM in GiB, instead of /proc/meminfo (tests, planning elsewhere)
# Storage that the loaders fill tensor by tensor (modules/wan/loading/part_load.py, part_folder.py); int8/nf4 block
# linears are quantised one by one as they are read (modules/wan/loading/storage.py `quantiser_for`).
STREAMED_STORAGE = ("float8_e4m3fn", "bfloat16", "float16", "float32", "int8", "nf4")
# bitsandbytes' nf4 quantiser on the CPU (backends/default/ops.py, 0.50), which loading runs whatever the training
# device: the linear as float32, its scaled copy and the clamp's, int32 bucket indices, their uint8 cast and the
# packing's halves: 14 bytes per weight at its peak beside the 16-bit linear read. Measured at A14B's width with
# the heap's growth taken out (MALLOC_MMAP_THRESHOLD_): 16.3 bytes per weight of the largest linear above the stored
# expert, this term 16.6 (docs/benchmarks.md "nf4 loading").
NF4_QUANTISE_TEMPORARY_BYTES = 14
# An fp8 UMT5 is read in bf16 and then quantised (modules/wan/loading/storage.py).
TEXT_ENCODER_LOAD_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 2}


class HostMemoryError(UserError, MemoryError):
    """The run will not fit this machine's RAM; the message gives the plan and the least change that fits."""


@dataclass
class HostPhase:
    name: str
    anonymous: dict[str, float] = field(default_factory=dict)  # bytes per part, the process's own memory
    pinned: dict[str, float] = field(default_factory=dict)  # page-locked staging
    file_backed: dict[str, float] = field(default_factory=dict)  # mapped weights that must stay resident
    # Mapped weights this phase does not use (the inactive expert; the experts while they load, which reads no data):
    # the kernel may drop these pages under pressure and read them again from the file when they are used; shown,
    # not counted in the peak.
    reclaimable: dict[str, float] = field(default_factory=dict)
    one_process: bool = False  # runs in one process whatever the run's count (scripts/cache.py)

    def per_process(self) -> float:
        return sum(self.anonymous.values()) + sum(self.pinned.values()) + sum(self.file_backed.values())

    def machine(self, processes: int) -> float:
        """Bytes on the machine with `processes` processes: mapped pages are shared, the rest is per process."""
        own = sum(self.anonymous.values()) + sum(self.pinned.values())
        return (1 if self.one_process else processes) * own + sum(self.file_backed.values())


@dataclass
class HostPlan:
    model: str
    processes: int
    phases: list[HostPhase]
    cache_first: bool  # the caching phase holds no transformer (scripts/cache.py, or the run caching before loading)
    config: object = field(repr=False, default=None)  # the TrainConfig planned (least_change plans changed copies)
    facts: ModelFacts | None = field(repr=False, default=None)

    def peak_bytes(self, processes: int | None = None) -> float:
        return max(p.machine(processes or self.processes) for p in self.phases)

    def peak_gib(self, processes: int | None = None) -> float:
        return self.peak_bytes(processes) / GIB

    def peak_phase(self) -> str:
        return max(self.phases, key=lambda p: p.machine(self.processes)).name

    def phase(self, name: str) -> HostPhase:
        return next(p for p in self.phases if p.name == name)

    def fits(self, ram_gib: float, skip_caching: bool = False) -> bool:
        phases = [p for p in self.phases if not (skip_caching and p.name.startswith("caching"))]
        return max(p.machine(self.processes) for p in phases) <= ram_gib * GIB * USABLE_SHARE

    def verdict(self, ram_gib: float) -> str:
        who = f" ({self.processes} processes)" if self.processes > 1 else ""
        head = f"{self.peak_gib():.1f} GiB peak in {self.peak_phase()}{who}"
        if self.fits(ram_gib):
            return f"fits {ram_gib:g} GB of RAM ({head})"
        change = self.least_change(ram_gib)
        return f"does not fit {ram_gib:g} GB of RAM ({head}); " + (
            f"fix: {change}" if change else "no setting makes it fit: lower data.resolution or data.frames"
        )

    def least_change(self, ram_gib: float) -> str | None:
        """The least change that makes the run fit `ram_gib`, in words, or None. Order: build the cache first
        (costs nothing), fp8 storage (precision of the frozen base), fewer processes, then giving up host-side
        savings that cost GPU memory (activation offloading)."""
        return _least_change(self, ram_gib)

    def table(self) -> str:
        several = f"; {self.processes} processes" if self.processes > 1 else ""
        lines = [f"host memory (RAM) of {self.model}, per process{several}"]
        for phase in self.phases:
            kinds = (
                ("anon", phase.anonymous),
                ("pinned", phase.pinned),
                ("mapped", phase.file_backed),
                ("mapped, reclaimable: not in the peak", phase.reclaimable),
            )
            lines.append(f"  {phase.name:<44} {phase.per_process() / GIB:7.2f} GiB")
            for kind, parts in kinds:
                for name, value in parts.items():
                    lines.append(f"    {name + ' (' + kind + ')':<42} {value / GIB:7.2f}")
        lines.append(f"  peak on the machine: {self.peak_gib():.2f} GiB in {self.peak_phase()}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def gib(parts: dict[str, float]) -> dict[str, float]:
            return {k: round(v / GIB, 3) for k, v in parts.items()}

        return {
            "model": self.model,
            "processes": self.processes,
            "peak_gib": round(self.peak_gib(), 3),
            "peak_phase": self.peak_phase(),
            "phases": [
                {
                    "name": p.name,
                    "per_process_gib": round(p.per_process() / GIB, 3),
                    "anonymous": gib(p.anonymous),
                    "pinned": gib(p.pinned),
                    "file_backed": gib(p.file_backed),
                    "reclaimable": gib(p.reclaimable),
                }
                for p in self.phases
            ],
            "verdicts": {f"{ram} GB": self.verdict(ram) for ram in RAM_SIZES},
        }


@dataclass(frozen=True)
class HostMemorySummary:
    """What the window's memory hint shows: one line per RAM size, and this machine's."""

    peak_gib: float
    peak_phase: str
    processes: int
    ram_gib: float | None  # this machine's (None: unknown)
    fits: bool | None  # on this machine
    verdict: str  # on this machine, or for 32 GB when unknown
    least_change: str | None
    verdicts: dict[int, str]


def host_memory_summary(
    config, facts: ModelFacts, processes: int = 1, ram_gib: float | None = None
) -> HostMemorySummary:
    plan = build_host_plan(config, facts, processes)
    ram = ram_gib if ram_gib is not None else machine_ram_gib()
    target = ram if ram is not None else RAM_SIZES[0]
    return HostMemorySummary(
        peak_gib=round(plan.peak_gib(), 2),
        peak_phase=plan.peak_phase(),
        processes=processes,
        ram_gib=ram,
        fits=plan.fits(ram) if ram is not None else None,
        verdict=plan.verdict(target),
        least_change=None if plan.fits(target) else plan.least_change(target),
        verdicts={size: plan.verdict(size) for size in RAM_SIZES},
    )


def machine_ram_gib() -> float | None:
    """This machine's RAM: $WAN_TRAINER_RAM_GIB if set, else MemTotal of /proc/meminfo (None where unknown)."""
    if os.environ.get(RAM_ENV):
        try:
            return float(os.environ[RAM_ENV])
        except ValueError:
            raise HostMemoryError(
                f"{RAM_ENV}={os.environ[RAM_ENV]!r}: expected the machine's RAM in GiB, e.g. 64. Fix: set a number "
                "or unset it."
            ) from None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        return None
    return None


# ---- the phases ---------------------------------------------------------------------------------------------
def build_host_plan(config, facts: ModelFacts, processes: int = 1, cache_first: bool = False) -> HostPlan:
    """Host memory of `config` (a TrainConfig) per phase, for `processes` processes of one machine. `cache_first`:
    the cache is built beforehand by scripts/cache.py, so the run's own caching phase holds no transformer."""
    gpu = config.training.device != "cpu"
    base = {"process (Python, torch" + (", CUDA" if gpu else "") + ")": PROCESS_BYTES["cuda" if gpu else "cpu"]}
    storage = config.model.transformer_dtype
    expert = facts.experts[0]
    loaded_experts = len(facts.experts)
    stored = expert_bytes(expert, storage)
    keeps_umt5 = config.training_method == "embedding" or bool(config.embedding.frozen_embeddings)
    umt5 = facts.text_encoder.params * TEXT_ENCODER_LOAD_BYTES.get(config.model.text_encoder_dtype, 2)
    vae = facts.vae.params * DTYPE_BYTES.get(config.model.vae_dtype, 4)
    text = {"UMT5 (kept: embeddings)": umt5} if keeps_umt5 else {}

    loading = HostPhase("loading the experts", {**base, **text})
    read_as = config.training.train_dtype
    mapped = maps_weights(config, facts)
    # Mapped: views of the files, whose pages are read only when the weights are used (shared by the processes).
    held = loading.reclaimable if mapped else loading.anonymous
    if config.model.base_loras and storage in ("float8_e4m3fn", "int8", "nf4"):
        # Base LoRAs are merged into 16-bit weights, quantised after (modules/wan/loading/loader.py): every expert
        # is whole in the training dtype once.
        loading.anonymous[f"experts read as {read_as} to merge base LoRAs ({loaded_experts})"] = (
            loaded_experts * expert_bytes(expert, read_as)
        )
    elif storage in STREAMED_STORAGE:
        held[f"experts, {storage} ({loaded_experts}{', mapped' if mapped else ''})"] = loaded_experts * stored
        loading.anonymous["load transient (largest tensor, read + cast)"] = _load_transient(expert, storage, read_as)

    window = _decoded_window_bytes(config.data.resolution, config.data.frames)
    encoders = {"UMT5 (read for missing captions)": umt5, "VAE": vae, "decoded windows (two in flight)": window}
    umt5_table = _mapped_umt5_table(config, facts)
    # A run caches before its experts load (GenericTrainer._load_and_cache), in its main process, unless UMT5 must
    # stay for embeddings: then it caches with the experts loaded, unless scripts/cache.py built the cache first.
    beside_experts = keeps_umt5 and not cache_first
    if not beside_experts:
        name = "caching (scripts/cache.py, no transformer)" if cache_first else "caching (first, no transformer yet)"
        caching = HostPhase(name, {**base, **encoders}, one_process=True)
        if umt5_table:
            # Its folder in the dtype it loads in: from_pretrained leaves UMT5 on the files' mapping, the layers are
            # read whole by every caption, the 256k-token table only at the captions' tokens (measured: the caching
            # phase at 2 and 4 real layers, docs/benchmarks.md).
            del caching.anonymous["UMT5 (read for missing captions)"]
            caching.file_backed["UMT5 without its token table (mapped, read by every caption)"] = umt5 - umt5_table
            caching.reclaimable["UMT5's token table (mapped, read at the captions' tokens)"] = umt5_table
    else:
        caching = HostPhase("caching (in the run, beside the experts: embeddings)", {**base, **encoders})
        (caching.reclaimable if mapped else caching.anonymous)[
            f"experts, {storage} ({loaded_experts}{', mapped' if mapped else ''})"
        ] = loaded_experts * stored

    training = HostPhase("training", {**base, **text})
    _training_weights(training, config, facts, expert, storage, gpu, mapped)
    sampling = HostPhase("sampling (VAE read for the decode)", dict(training.anonymous), dict(training.pinned))
    sampling.file_backed = dict(training.file_backed)
    sampling.reclaimable = dict(training.reclaimable)
    sampling.anonymous["VAE"] = vae
    sampling.anonymous["decoded sample frames"] = max(
        [3 * 4 * 3 * w * h * f for w, h, f in ((s.width, s.height, s.frames) for s in config.sampling.samples)] or [0]
    )
    first = [loading, caching] if beside_experts else [caching, loading]  # the order a run goes through them
    phases = first + [training] + ([sampling] if config.sampling.samples else [])
    return HostPlan(facts.name, processes, phases, not beside_experts, config, facts)


def _training_weights(
    phase: HostPhase, config, facts: ModelFacts, expert: TransformerFacts, storage: str, gpu: bool, mapped: bool
) -> None:
    """What stays in CPU memory while steps run: experts not on the GPU, swapped blocks (mapped from their file where
    `mapped`, else the process's own), the swap's pinned staging, offloaded activations. The optimizer state of an
    offloaded expert is not here: it stays on the GPU (only the module moves), so it costs no host memory."""
    experts = len(facts.experts)
    trained = experts if (experts > 1 and config.experts.train == "both") else 1
    offload = config.experts.offload_inactive_expert and trained > 1
    on_gpu = 1 if (offload or trained == 1) else trained
    swap = min(config.memory.blocks_to_swap, expert.num_blocks)
    swapped = swap * block_bytes(expert, storage)
    off_gpu = experts - on_gpu  # the inactive expert (offloaded), or an expert loaded for sampling only
    if mapped:
        # Views of the files: the swapped blocks of the experts on the GPU are read every step (must stay resident);
        # an expert off the GPU is read again only when it comes back, so its pages are the kernel's to drop.
        if off_gpu:
            phase.reclaimable[f"experts not on the GPU ({off_gpu}, mapped)"] = off_gpu * expert_bytes(expert, storage)
        if swap:
            phase.file_backed[f"swapped blocks ({swap} x {on_gpu} experts on the GPU, mapped)"] = on_gpu * swapped
    else:
        if off_gpu:
            phase.anonymous[f"experts not on the GPU ({off_gpu}), without swapped blocks"] = off_gpu * (
                expert_bytes(expert, storage) - swapped
            )
        if swap:  # every expert's swapped blocks, in the process's own (pageable) memory
            phase.anonymous[f"swapped blocks ({swap} x {experts} experts)"] = experts * swapped
    if swap:
        # Copies to the GPU go through one staging buffer of `window` blocks, page-locked at its exact size
        # (host_buffer.py). The experts' swappers share it (same block size; they never run at once).
        if gpu:
            window = min(SWAP_WINDOW, swap)
            phase.pinned[f"swap staging ({window} blocks)"] = window * block_bytes(expert, storage)
    if offload and config.training_method == "lora":
        # The inactive expert's LoRA moves with it; its optimizer state stays on the GPU.
        phase.anonymous["LoRA of the inactive expert (float32)"] = expert.lora_params_per_rank * config.lora.rank * 4
    if offload and config.training_method == "full":
        share = _trained_share(config, expert)
        phase.anonymous["trained float32 weights of the inactive expert"] = share * expert.params * 4
    if config.memory.offload_activations:
        tokens = config.training.batch_size * facts.tokens_for_area(config.data.resolution, config.data.frames)
        scale = 2 if config.training.train_dtype == "float32" else 1
        per_block = tokens * expert.dim * 2 * scale
        # Each parked in a slot of exactly its size, reused every step (host_slots.py); page-locked on a GPU.
        label = f"offloaded block inputs ({expert.num_blocks} blocks)"
        (phase.pinned if gpu else phase.anonymous)[label] = expert.num_blocks * per_block


def _mapped_umt5_table(config, facts: ModelFacts) -> float:
    """Bytes of UMT5's token table where UMT5 stays on its folder's mapping (the files store the dtype it loads in);
    0 where it is read into the process's own memory (a single file, a conversion, fp8)."""
    dtype = config.model.text_encoder_dtype
    if facts.text_encoder_source_dtype is None or facts.text_encoder_source_dtype != dtype:
        return 0.0
    return facts.text_encoder.embedding_params * DTYPE_BYTES.get(dtype, 2)


def maps_weights(config, facts: ModelFacts) -> bool:
    """Whether the experts' weights are views of their file (memory.map_weights, modules/module/mapped_weights.py):
    the files store the block matrices in the storage dtype, and no base LoRA or int8/nf4 rewrites them."""
    return (
        bool(getattr(config.memory, "map_weights", False))
        and facts.source_dtype is not None
        and facts.source_dtype == config.model.transformer_dtype
        and not config.model.base_loras
    )


def _trained_share(config, expert: TransformerFacts) -> float:
    from modules.memory.phases import trained_fraction

    return trained_fraction(config.finetune.block_filter, expert.num_blocks)


def pinned_block_bytes(expert: TransformerFacts, storage: str) -> float:
    """One swapped block pinned tensor by tensor, as the caching host allocator takes it (each tensor rounded up to
    a power of two): what block swapping cost before its bounded staging, kept for the comparison (docs/block_swap.md).
    WAN's block: two FFN matrices (dim x ffn_dim) and square attention matrices (dim x dim)."""
    per = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1, "int8": 1, "nf4": 0.5}[storage]
    ffn = expert.dim * expert.ffn_dim
    square_count = max(expert.block_linears - 2, 0)
    square = (expert.block_linear_params - 2 * ffn) / square_count if square_count else 0
    rest = block_bytes(expert, storage) - expert.block_linear_params * per
    return 2 * _pow2(ffn * per) + square_count * _pow2(square * per) + 1.5 * rest


def _pow2(size: float) -> float:
    return float(1 << max(int(size - 1).bit_length(), 0)) if size > 0 else 0.0


def _load_transient(expert: TransformerFacts, storage: str, read_as: str = "bfloat16") -> float:
    """Beyond the stored model while loading: the largest tensor read in its file dtype (bf16) and its cast; for
    int8/nf4 the linear read in the training dtype, bitsandbytes' temporaries while it quantises it (one float32
    copy for int8; NF4_QUANTISE_TEMPORARY_BYTES per weight for nf4), and its quantised copy. Measured for int8 at
    the real width (docs/benchmarks.md): ~0.8 GiB above the stored expert whatever the depth, so this term is
    ~0.3 GiB short, 2% of a 40-block expert."""
    if storage == "nf4":
        return expert.largest_linear * (
            DTYPE_BYTES.get(read_as, 2) + NF4_QUANTISE_TEMPORARY_BYTES + LINEAR_STORAGE_BYTES[storage]
        )
    if storage == "int8":
        return expert.largest_linear * (DTYPE_BYTES.get(read_as, 2) + 4 + LINEAR_STORAGE_BYTES[storage])
    return expert.largest_linear * (2 + {"float8_e4m3fn": 1}.get(storage, DTYPE_BYTES.get(storage, 2)))


def _decoded_window_bytes(resolution: int, frames: int) -> float:
    """One window decoded (uint8) and as float32 pixels twice (resize, crop), with the next window decoding ahead."""
    return 2 * frames * resolution * resolution * 3 * (1 + 2 * 4)


# ---- the least change ------------------------------------------------------------------------------------------
def _least_change(plan: HostPlan, ram_gib: float) -> str | None:
    config, facts = plan.config, plan.facts
    if config is None or facts is None:
        return None
    # Each candidate adds to the one before: (cache first, settings, processes).
    candidates: list[tuple[bool, dict[str, object], int]] = [(True, {}, plan.processes)]
    settings: dict[str, object] = {}
    if config.training_method != "full" and config.model.transformer_dtype in ("bfloat16", "float16", "float32"):
        settings = {"model.transformer_dtype": "float8_e4m3fn"}
        candidates.append((True, dict(settings), plan.processes))
    candidates += [(True, dict(settings), count) for count in range(plan.processes - 1, 0, -1)]
    if config.memory.offload_activations:
        settings = {**settings, "memory.offload_activations": False}  # costs GPU memory: the last resort
        candidates.append((True, dict(settings), 1))
    for first, changes, processes in candidates:
        candidate = build_host_plan(with_changes(config, changes), facts, processes, cache_first=first)
        if candidate.fits(ram_gib):
            words = ["build the cache first: scripts/cache.py --config-path FILE"] if not plan.cache_first else []
            words += [
                f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in changes.items()
            ]
            words += [f"--num-processes {processes}"] if processes < plan.processes else []
            return ", then ".join(words) + f" ({candidate.peak_gib():.1f} GiB peak)"
    return None


# ---- what the CLI, the report and the run use ----------------------------------------------------------------
def host_plan_text(plan: HostPlan, ram_gib: float | None) -> str:
    """The table and a verdict for 32, 64 and 128 GB (and this machine's RAM), as `--plan` prints them."""
    lines = [plan.table()]
    sizes = sorted({*RAM_SIZES, *([round(ram_gib, 1)] if ram_gib else [])})
    for size in sizes:
        mark = " (this machine)" if ram_gib and size == round(ram_gib, 1) else ""
        lines.append(f"  {size:g} GB RAM{mark}: {plan.verdict(size)}")
    lines.append(f"  (a plan fits when its peak is under {USABLE_SHARE:.0%} of the RAM; ${RAM_ENV} overrides the size)")
    return "\n".join(lines)


def host_plan_entry(plan: HostPlan, ram_gib: float | None) -> dict:
    """diagnostics.json's `host_memory_plan`."""
    return {
        **plan.to_dict(),
        "ram_gib": None if ram_gib is None else round(ram_gib, 2),
        "verdict": plan.verdict(ram_gib) if ram_gib else plan.verdict(RAM_SIZES[0]),
    }


def refuse_if_ram_too_small(plan: HostPlan, ram_gib: float | None) -> str | None:
    """Before loading: raise HostMemoryError when loading, training or sampling cannot fit the machine's RAM;
    return a warning (or None) when only caching inside the run would not (a complete cache skips it)."""
    if ram_gib is None:
        return None
    if not plan.fits(ram_gib, skip_caching=True):
        change = plan.least_change(ram_gib)
        raise HostMemoryError(
            f"host memory: this run needs ~{plan.peak_gib():.1f} GiB of RAM ({plan.peak_phase()}), but this machine "
            f"has {ram_gib:.1f} GiB (a plan may use {USABLE_SHARE:.0%} of it). Expected: a run that fits, so the "
            "kernel does not kill it mid-run. Fix: "
            + (change if change else "lower data.resolution or data.frames")
            + f". The plan, phase by phase: scripts/train.py --config-path FILE --plan (set ${RAM_ENV} to plan for "
            "another size)."
        )
    if not plan.fits(ram_gib):
        if plan.cache_first:  # caching holds no transformer already: only a smaller window or encoder helps
            return (
                f"host memory: if the cache is incomplete, caching needs ~{plan.peak_gib():.1f} GiB of RAM (UMT5, the "
                f"VAE and decoded windows), more than this machine's {ram_gib:.1f} GiB allows; build the cache on a "
                "larger machine, or lower data.resolution or data.frames (see scripts/train.py --plan)"
            )
        return (
            f"host memory: if the cache is incomplete, caching inside this run needs ~{plan.peak_gib():.1f} GiB of "
            f"RAM with the transformer loaded, more than this machine's {ram_gib:.1f} GiB allows; build the cache "
            "first with scripts/cache.py --config-path FILE (see scripts/train.py --plan)"
        )
    return None
