"""Textual-inversion embeddings: vectors.py (files, placeholders, tokenizer), text.py (encoding with them)."""
