"""File formats and key names: key_map.py (diffusers <-> original WAN / ComfyUI names), part_keys.py
(VAE and UMT5 names), headers.py (safetensors headers, read without the data), lora_file.py (LoRA read/write and
metadata), lora_pairs.py (which file of a LoRA goes into which expert), lycoris_keys.py (LoHa/LoKr keys),
lora_compatibility.py (a LoRA checked against a model), model_files.py (full-model files).
"""
