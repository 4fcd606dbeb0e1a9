"""Shaping clips for training: frame windows (frame_windows.py) and resolution/frame buckets (buckets.py)."""
