"""Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) of common GPUs, from the vendors' data sheets.

MFU = achieved model FLOP/s / peak. Consumer NVIDIA cards are listed at their bf16 rate with float32 accumulation,
which is what PyTorch's bf16 matmuls use. A card not listed (or a CPU) has no peak: pass --peak-tflops.
"""

from __future__ import annotations

# Matched as case-insensitive substrings of torch.cuda.get_device_name(), most specific first.
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A6000", 154.8),
    ("RTX 6000 Ada", 364.0),
    ("RTX 5090", 209.5),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
    ("MI300X", 1307.0),
    ("MI250X", 383.0),
    ("MI210", 181.0),
    ("7900 XTX", 122.8),
]


def peak_tflops(device_name: str) -> float | None:
    name = device_name.lower()
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in name:
            return value
    return None
