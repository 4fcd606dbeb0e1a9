"""The dtype names a setting accepts (weights, autocast, saving), without importing torch.

They live on the ground floor so that both the config fields (choices) and `modules/util/device.py` (the torch
dtypes) read them from one place without util importing the config package.
"""

DTYPE_NAMES = ("float32", "bfloat16", "float16")
