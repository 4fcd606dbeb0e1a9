"""A memory plan from a config and its model's facts (no registry here, so the plugin itself may use this module).

`plan_memory(config)` in modules/planning.py (above the registry) finds the facts through the registry and calls
`build_plan`; the API is described there. The arithmetic is in modules/memory/phases.py; the formulas and what was
measured are in docs/presets.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from modules.config.optimizer_state_bytes import optimizer_state_bytes
from modules.memory.config_changes import with_changes as _with
from modules.memory.facts import ModelFacts
from modules.memory.phases import GIB, Phase, RunSettings, caching_phase, sampling_phases, training_phase
from modules.memory.phases import trained_fraction as _trained_fraction


def settings_from_config(config, facts: ModelFacts) -> RunSettings:
    memory = getattr(config, "memory", None)
    experts = len(facts.experts)
    trained = experts if (experts > 1 and config.experts.train == "both") else 1
    offload = config.experts.offload_inactive_expert and trained > 1
    return RunSettings(
        method=config.training_method,
        transformer_storage=config.model.transformer_dtype,
        text_encoder_dtype=config.model.text_encoder_dtype,
        vae_dtype=config.model.vae_dtype,
        compute_dtype=config.training.train_dtype,
        lora_rank=config.lora.rank,
        optimizer=config.training.optimizer,
        optimizer_state_bytes=optimizer_state_bytes(config.training),
        gradient_checkpointing=config.training.gradient_checkpointing,
        batch_size=config.training.batch_size,
        resolution=config.data.resolution,
        frames=config.data.frames,
        trained_experts=trained,
        experts_resident=1 if (offload or trained == 1) else trained,
        shared_lora=config.experts.shared_lora,
        trained_fraction=_trained_fraction(config.finetune.block_filter, facts.experts[0].num_blocks),
        full_weight_dtype=config.finetune.weight_dtype,
        ema_on_gpu=config.ema.enabled and config.ema.device == "train_device",
        embedding_vectors=config.embedding.num_vectors,
        blocks_to_swap=getattr(memory, "blocks_to_swap", 0),
        offload_activations=getattr(memory, "offload_activations", False),
        vae_tiling=getattr(memory, "vae_tiling", "auto"),
        text_encoder_on_cpu=getattr(memory, "text_encoder_on_cpu", False),
        samples=[(s.width, s.height, s.frames) for s in config.sampling.samples],
    )


def card_name(vram_gib: float) -> str:
    return f"{round(vram_gib)} GB"


@dataclass
class Recommendation:
    changes: dict[str, object]  # dotted setting -> value
    plan: MemoryPlan

    def describe(self) -> str:
        return ", ".join(f"{k}={_value(v)}" for k, v in self.changes.items())


def _value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass
class MemoryPlan:
    model: str
    phases: list[Phase]
    tokens: int  # latent tokens of one training clip
    vae_tiled: bool
    config: object  # the TrainConfig planned (recommend() plans changed copies of it)
    facts: ModelFacts

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda p: p.total).name

    @property
    def peak_gib(self) -> float:
        return max(p.total for p in self.phases) / GIB

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def fits(self, vram_gib: float) -> bool:
        return self.peak_gib <= vram_gib

    def traffic_per_step(self) -> float:
        """Bytes copied between CPU and GPU per training step by swapping (each swapped block in once per forward
        and once per backward) and activation offloading (each checkpointed input's copies as the offloading makes
        them: offload_copies_per_step, measured by tests/test_activation_offload_traffic.py)."""
        from modules.memory.phases import block_bytes
        from modules.module.activation_offload import offload_copies_per_step

        memory = getattr(self.config, "memory", None)
        expert = self.facts.experts[0]
        swap = min(getattr(memory, "blocks_to_swap", 0), expert.num_blocks)
        traffic = 2 * swap * block_bytes(expert, self.config.model.transformer_dtype)
        if getattr(memory, "offload_activations", False):
            scale = 2 if self.config.training.train_dtype == "float32" else 1
            traffic += offload_copies_per_step(expert.num_blocks) * self.tokens * 2 * expert.dim * scale
        return traffic

    def in_use(self) -> str:
        """The memory-saving settings this plan relies on, in words."""
        config, bits = self.config, []
        if config.model.transformer_dtype not in ("bfloat16", "float32", "float16"):
            bits.append(f"{config.model.transformer_dtype} storage")
        memory = getattr(config, "memory", None)
        if getattr(memory, "blocks_to_swap", 0):
            bits.append(f"blocks_to_swap={memory.blocks_to_swap}")
        if getattr(memory, "offload_activations", False):
            bits.append("offload_activations")
        if getattr(memory, "text_encoder_on_cpu", False):
            bits.append("text_encoder_on_cpu")
        if self.vae_tiled:
            bits.append("VAE tiling")
        return ", ".join(bits)

    def verdict(self, vram_gib: float | None) -> str:
        """One line: does it fit this card, and if not, what to change."""
        if vram_gib is None:
            return f"needs ~{self.peak_gib:.1f} GiB (no GPU found to compare with)"
        plan = self.for_card(vram_gib)
        used = plan.in_use()
        if plan.fits(vram_gib):
            return (
                f"fits a {card_name(vram_gib)} card ({plan.peak_gib:.1f} GiB peak in {plan.peak_phase}"
                + (f"; with {used}" if used else "")
                + ")"
            )
        advice = plan.recommend(vram_gib)
        if advice is not None:
            return (
                f"needs ~{plan.peak_gib:.0f} GiB: set {advice.describe()} "
                f"(then {advice.plan.peak_gib:.1f} GiB peak in {advice.plan.peak_phase})"
            )
        if plan.peak_phase.startswith("sampling"):
            fix = "shorten or shrink the in-training samples (sampling.samples)"
        elif plan.peak_phase == "caching":
            fix = "lower data.resolution or data.frames, or set memory.vae_tiling=on"
        else:
            fix = "lower data.resolution or data.frames"
        card = card_name(vram_gib)
        return (
            f"needs ~{plan.peak_gib:.0f} GiB in {plan.peak_phase}: no memory setting makes it fit a {card} card; {fix}"
        )

    def for_card(self, vram_gib: float | None) -> MemoryPlan:
        """This plan with vae_tiling=auto decided for that card (the planner is cheap: the facts are cached)."""
        return build_plan(self.config, vram_gib, self.facts)

    def recommend(self, vram_gib: float) -> Recommendation | None:
        """The least change of memory settings under which this run fits the card, or None. Order of preference:
        gradient checkpointing, VAE tiling where needed (vae_tiling=auto; cost: time only), block swapping (time,
        exact), activation offloading (time, exact), fp8 storage (precision), then fp8 with swapping."""
        config = self.config
        steps: list[dict[str, object]] = [{}]
        if not config.training.gradient_checkpointing:
            steps.append({"training.gradient_checkpointing": True})
        if getattr(getattr(config, "memory", None), "vae_tiling", "auto") == "off":
            steps.append({**steps[-1], "memory.vae_tiling": "auto"})  # auto tiles only where untiled cannot fit
        base = dict(steps[-1])
        # bitsandbytes storage keeps quantisation state that block swapping does not move (config check_memory).
        blocks = 0 if config.model.transformer_dtype in ("int8", "nf4") else self.facts.experts[0].num_blocks
        swaps = [{**base, "memory.blocks_to_swap": n} for n in range(1, blocks + 1)]
        steps += swaps
        steps += [{**s, "memory.offload_activations": True} for s in [base, *swaps]]
        fp8_ok = (
            config.training_method != "full"
            and config.training.train_dtype in ("bfloat16", "float16")
            and config.model.transformer_dtype in ("bfloat16", "float16", "float32")
        )
        if fp8_ok:
            fp8 = {**base, "model.transformer_dtype": "float8_e4m3fn"}
            steps.append(fp8)
            steps += [{**fp8, "memory.blocks_to_swap": n} for n in range(1, blocks + 1)]
            steps += [
                {**fp8, "memory.blocks_to_swap": n, "memory.offload_activations": True} for n in range(blocks + 1)
            ]
        best = None
        for changes in steps:
            changed = {k: v for k, v in changes.items() if _get(config, k) != v}
            candidate = build_plan(_with(config, changed), vram_gib, self.facts)
            if candidate.fits(vram_gib):
                # Exact settings before fp8 (it changes the base the LoRA trains against); then the least
                # CPU<->GPU traffic per step; then the earliest (fewest changes).
                cost = ("model.transformer_dtype" in changed, candidate.traffic_per_step())
                if best is None or cost < best[0]:
                    best = (cost, Recommendation(changed, candidate))
        return None if best is None else best[1]

    def table(self) -> str:
        lines = [f"{self.model}: {self.tokens:,} latent tokens per training clip"]
        for phase in self.phases:
            lines.append(f"  {phase.name:<44} {phase.total / GIB:7.2f} GiB")
            for name, value in phase.parts.items():
                lines.append(f"    {name:<42} {value / GIB:7.2f}")
        lines.append(f"  peak: {self.peak_gib:.2f} GiB in {self.peak_phase}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "tokens": self.tokens,
            "peak_gib": round(self.peak_gib, 3),
            "peak_phase": self.peak_phase,
            "vae_tiled": self.vae_tiled,
            "phases": [
                {
                    "name": p.name,
                    "total_gib": round(p.total / GIB, 3),
                    "parts": {k: round(v / GIB, 3) for k, v in p.parts.items()},
                }
                for p in self.phases
            ],
        }


def _get(config, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part, None)
    return value


def build_plan(config, vram_gib: float | None, facts: ModelFacts) -> MemoryPlan:
    """Plan `config` (a TrainConfig). With vram_gib, vae_tiling=auto tiles where the untiled VAE pass would not fit
    that card; without, where the untiled pass would be the run's peak."""
    run = settings_from_config(config, facts)
    training = training_phase(facts, run)

    def phases(tiled: bool) -> list[Phase]:
        return [caching_phase(facts, run, tiled), training, *sampling_phases(facts, run, tiled)]

    if run.vae_tiling == "auto":
        untiled = phases(False)
        vae_peak = max(p.total for p in untiled if p.name == "caching" or "decode" in p.name)
        other_peak = max(p.total for p in untiled if not (p.name == "caching" or "decode" in p.name))
        tiled = vae_peak > vram_gib * GIB if vram_gib is not None else vae_peak > other_peak
    else:
        tiled = run.vae_tiling == "on"
    return MemoryPlan(
        model=facts.name,
        phases=phases(tiled),
        tokens=run.batch_size * facts.tokens_for_area(run.resolution, run.frames),
        vae_tiled=tiled,
        config=config,
        facts=facts,
    )
