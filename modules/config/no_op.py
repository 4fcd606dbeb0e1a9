"""Settings that would make a run train nothing, refused when the config loads (before any model or data is read).

Each rule is a combination the config alone shows to be a no-op: every step's loss would be 0, every update 0, or
no step would reach the part being trained. A run like that would spend hours and save an unchanged model (for a
LoRA, the identity). Checks that need the model's layer names (`lora.layer_filter` matching nothing) are made from
the model's headers before it loads (modules/trainer/guards/preflight.py, via the plugin's `check_config`).
"""

from __future__ import annotations

from modules.config.validation import ConfigError


def check_trains_something(config) -> None:
    concepts = {i: c for i, c in enumerate(config.data.concepts) if c.enabled}  # a switched-off one trains nothing
    if concepts and all(concept.loss_weight == 0 for concept in concepts.values()):
        names = ", ".join(f"data.concepts[{i}].loss_weight" for i in concepts)
        raise ConfigError(
            f"{names}: 0, so every step's loss is 0 and the run would train nothing (the saved "
            f"{config.training_method} would equal the start). Expected: a weight above 0 for at least one concept. "
            "Fix: set loss_weight to 1 (the default), or remove the concepts that should not train."
        )
    training = config.training
    if training.learning_rate == 0 and not _expert_rate_above_zero(config):
        raise ConfigError(
            "training.learning_rate: 0, so no step changes a weight and the run would train nothing. Expected: a "
            "rate above 0. Fix: set training.learning_rate, e.g. 1e-4 for a LoRA."
        )
    if config.training_method == "lora" and config.lora.alpha == 0:
        raise ConfigError(
            "lora.alpha: 0 scales every LoRA update to 0 (the update is scaled by alpha / rank), so the run would "
            f"train nothing. Expected: alpha above 0. Fix: set lora.alpha, e.g. to lora.rank ({config.lora.rank})."
        )
    experts = config.experts
    for expert, ratio_never in (("high_noise", 0.0), ("low_noise", 1.0)):
        if experts.train == expert and experts.high_noise_step_ratio == ratio_never:
            raise ConfigError(
                f"experts.high_noise_step_ratio: {ratio_never:g} with experts.train={expert}: no step goes to the "
                f"{expert.replace('_', '-')} expert, the only one trained, so the run would train nothing. Fix: leave "
                "experts.high_noise_step_ratio empty (the timestep distribution's share) or set it between 0 and 1."
            )


def _expert_rate_above_zero(config) -> bool:
    """A14B runs may give each expert its own rate, which then replaces training.learning_rate."""
    experts = config.experts
    rates = {"high_noise": experts.high_noise_learning_rate, "low_noise": experts.low_noise_learning_rate}
    trained = ("high_noise", "low_noise") if experts.train == "both" else (experts.train,)
    return any(rates[name] is not None and rates[name] > 0 for name in trained)
