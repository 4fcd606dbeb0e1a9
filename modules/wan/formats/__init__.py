"""File formats and key names: key_map.py (diffusers <-> original WAN / ComfyUI names), part_keys.py
(VAE and UMT5 names), lora_file.py (LoRA read/write and metadata), model_files.py and single_file_writer.py
(full-model files).
"""

__all__ = ["key_map", "lora_file", "model_files", "part_keys", "single_file_writer"]
