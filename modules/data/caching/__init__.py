"""The safetensors cache (cache.py: keys, entries) and its NaN/Inf check (cache_check.py)."""
