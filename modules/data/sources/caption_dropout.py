"""Caption dropout: a share of clips trained with the empty prompt, so a LoRA keeps classifier-free guidance
working (the pipelines' unconditional branch encodes "" exactly this way). The share is the run's
data.caption_dropout, or a concept's own.

Whether a clip drops its caption is a pure function of (seed, epoch, batch index within the epoch, the clip's place
in the step's whole batch): it draws from no shared generator, so turning dropout on changes no other random draw,
a resumed run (which skips to the same batch of the same epoch) drops exactly the clips an uninterrupted run drops,
and several processes, each with its share of the batch, drop what one process with the whole batch would.
"""

from __future__ import annotations

import hashlib

EMPTY_PROMPT = ""


def drops_caption(seed: int, epoch: int, batch_index: int, rate: float, position: int = 0) -> bool:
    """True for about `rate` of all (epoch, batch, position) triples, independently of each other. The first clip of
    a batch (position 0) draws what the whole batch drew when dropout was decided batch by batch."""
    if rate <= 0.0:
        return False
    place = f":{position}" if position else ""
    digest = hashlib.sha256(f"caption-dropout:{seed}:{epoch}:{batch_index}{place}".encode()).digest()
    uniform = int.from_bytes(digest[:8], "big") / 2**64  # in [0, 1)
    return uniform < rate
