"""Use this trainer's UMT5 embeddings in a plain diffusers WAN pipeline (no trainer objects needed).

    from diffusers import WanPipeline
    from modules.wan.embeddings.diffusers_pipeline import add_embedding_to_pipeline, pipeline_prompt

    pipe = WanPipeline.from_pretrained("Wan-AI/Wan2.2-TI2V-5B-Diffusers")
    add_embedding_to_pipeline(pipe, "my-concept.safetensors")    # -> ["<concept>", "<concept>_1"]
    video = pipe(prompt=pipeline_prompt(pipe, "a <concept> walks on a beach"), ...).frames[0]

The pipeline's tokenizer gets the embedding's tokens and its text encoder the vectors in their rows, exactly
as the trainer and scripts/sample.py load them (modules/wan/embeddings/vectors.py), so the pipeline encodes
prompts as the trainer does. Works for WanPipeline, WanImageToVideoPipeline and any object with `tokenizer`
and `text_encoder` attributes. A multi-vector embedding needs all its tokens in the prompt; `pipeline_prompt`
writes them for each loaded placeholder (or write them yourself: `<concept> <concept>_1`).
"""

from __future__ import annotations

from pathlib import Path

from modules.wan.embeddings.vectors import expand_prompt, load_embedding, token_names


def add_embedding_to_pipeline(pipe, path: str | Path) -> list[str]:
    """Load one embedding file into `pipe.tokenizer` and `pipe.text_encoder`; returns the tokens it added.

    Raises EmbeddingError (naming the file and the fix) for a file that is not an embedding, vectors that do not
    fit the text encoder's width, or a placeholder the tokenizer already knows (each embedding loads once)."""
    loaded = load_embedding(pipe, path)
    return token_names(loaded.placeholder, len(loaded.token_ids))


def pipeline_prompt(pipe, prompt: str) -> str:
    """`prompt` with every loaded multi-vector placeholder written as all its tokens (unchanged otherwise)."""
    return expand_prompt(pipe, prompt)
