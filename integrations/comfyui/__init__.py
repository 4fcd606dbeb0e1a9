"""WAN 2.2 trainer nodes for ComfyUI: link or copy this folder into ComfyUI/custom_nodes (see README.md)."""

from .nodes import WanUMT5Embeddings

NODE_CLASS_MAPPINGS = {"WanUMT5Embeddings": WanUMT5Embeddings}
NODE_DISPLAY_NAME_MAPPINGS = {"WanUMT5Embeddings": "WAN UMT5 embeddings (enable embedding:NAME)"}
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
