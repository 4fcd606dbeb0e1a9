"""Model-independent torch pieces: the flow-matching objective, LoRA layers, fp8 and bitsandbytes storage,
block swapping, activation offloading, eval_mode."""
