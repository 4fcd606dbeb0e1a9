"""Model-independent torch pieces: the flow-matching objective, LoRA layers, fp8 and bitsandbytes storage,
block swapping, activation offloading, eval_mode."""

__all__ = ["activation_offload", "block_swap", "bnb_linear", "eval_mode", "flow_matching", "fp8_linear", "lora"]
