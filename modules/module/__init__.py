"""Model-independent torch pieces: the flow-matching objective, LoRA layers, fp8 storage, eval_mode."""

__all__ = ["eval_mode", "flow_matching", "fp8_linear", "lora"]
