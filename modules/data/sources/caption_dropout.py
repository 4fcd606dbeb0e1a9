"""Caption dropout: a share of batches trained with the empty prompt, so a LoRA keeps classifier-free guidance
working (the pipelines' unconditional branch encodes "" exactly this way).

Whether a batch drops its caption is a pure function of (seed, epoch, batch index within the epoch): it draws
from no shared generator, so turning dropout on changes no other random draw, and a resumed run (which skips
to the same batch of the same epoch) drops exactly the batches an uninterrupted run drops.
"""

from __future__ import annotations

import hashlib

EMPTY_PROMPT = ""


def drops_caption(seed: int, epoch: int, batch_index: int, rate: float) -> bool:
    """True for about `rate` of all (epoch, batch) pairs, independently of each other."""
    if rate <= 0.0:
        return False
    digest = hashlib.sha256(f"caption-dropout:{seed}:{epoch}:{batch_index}".encode()).digest()
    uniform = int.from_bytes(digest[:8], "big") / 2**64  # in [0, 1)
    return uniform < rate
