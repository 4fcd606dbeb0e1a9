"""The ComfyUI node: a CLIP in, the same CLIP with `embedding:NAME` working for WAN's UMT5 out.

Only ComfyUI's public node interface is used (INPUT_TYPES / RETURN_TYPES / FUNCTION / CATEGORY and the
NODE_CLASS_MAPPINGS of __init__.py) plus two documented members of its CLIP object, `clone()` and `tokenizer`.
`folder_paths` (ComfyUI's model folder registry) is imported only when the node runs without a directory.
"""

from __future__ import annotations

from .embedding_files import with_embeddings


def default_embedding_directories() -> list[str]:
    """ComfyUI's configured embedding folders (models/embeddings and extra_model_paths.yaml entries)."""
    import folder_paths  # ComfyUI's own module; present whenever ComfyUI runs the node

    return list(folder_paths.get_folder_paths("embeddings"))


class WanUMT5Embeddings:
    """Enable `embedding:NAME` in prompts encoded with this CLIP (WAN 2.1 / 2.2 UMT5)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP",),
                "embedding_directory": (
                    "STRING",
                    {"default": "", "tooltip": "Folder of the embedding files; empty: ComfyUI's embeddings folders"},
                ),
            }
        }

    RETURN_TYPES = ("CLIP",)
    RETURN_NAMES = ("clip",)
    FUNCTION = "enable"
    CATEGORY = "conditioning/wan"
    DESCRIPTION = (
        "Makes `embedding:NAME` work in WAN prompts: ComfyUI builds WAN's UMT5 tokenizer without an embedding "
        "directory, so the syntax is otherwise ignored. Connect the CLIP from the text encoder loader here and "
        "this node's output to CLIP Text Encode. A missing or unfitting embedding is reported as a warning."
    )

    def enable(self, clip, embedding_directory: str = ""):
        directories = [embedding_directory.strip()] if embedding_directory.strip() else default_embedding_directories()
        enabled = clip.clone()
        enabled.tokenizer = with_embeddings(clip.tokenizer, directories)
        return (enabled,)
