"""From concepts to batches: the stage pipeline (pipeline.py, stages.py), masks for masked training (masks.py), the
skip report (report.py), the cached dataset (video_dataset.py), bucketed batching (batching.py) and the generic
cached data loader a model family fills (cached_loader.py)."""
