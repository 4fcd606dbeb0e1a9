"""Concepts and what a concept asks for: concepts.py (folders, captions), concept_options.py, caption_dropout.py,
flip.py, and the demo data (demo_data.py)."""
