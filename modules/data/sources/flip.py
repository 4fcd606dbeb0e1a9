"""Horizontal flip per concept (data.concepts[].flip): every window is trained as it is and mirrored.

The mirrored window is its own cache entry (its key names the flip; unflipped keys are unchanged, so caches
built before this option stay valid), encoded from the mirrored frames, so training steps still never touch
the VAE. Off by default: a caption may say "left" or "right", which a mirror image contradicts.
"""

from __future__ import annotations

import torch

from modules.data.flow.pipeline import PipelineStage


class AddFlippedWindows(PipelineStage):
    reads = ("bucket",)
    writes = ("flip",)

    def process(self, items):
        out = []
        for item in items:
            out.append({**item, "flip": False})
            out.append({**item, "flip": True})
        return out


def flip_horizontally(pixels: torch.Tensor) -> torch.Tensor:
    """Mirror frames left-right (the last dimension is the width in every layout the pipeline uses)."""
    return pixels.flip(-1)
