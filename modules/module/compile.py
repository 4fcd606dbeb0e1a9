"""torch.compile for a transformer: the repeated block once (regional), or the whole model.

Regional compilation compiles one block's code and reuses it for every block of the same class (torch's
nn-module inlining makes the graph independent of which block instance runs it), so a 40-block model compiles
in about the time of one block. Compiling in place (`Module.compile`) keeps parameter names and state dicts
unchanged: LoRA saving, backups and EMA see the same modules as in eager mode.
"""

from __future__ import annotations

import torch

COMPILE_MODES = ("none", "blocks", "full")


def compile_transformer(transformer: torch.nn.Module, mode: str, blocks_attribute: str = "blocks") -> None:
    """Compile `transformer` in place: 'blocks' compiles each block of `transformer.<blocks_attribute>`."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} is unknown; choose one of {', '.join(COMPILE_MODES)}")
    if mode == "none":
        return
    if mode == "full":
        transformer.compile()
        return
    for block in getattr(transformer, blocks_attribute):
        # dynamic=False: a bucket's shape is fixed for many steps; a new bucket is one more (cached) compile.
        block.compile(dynamic=False)
