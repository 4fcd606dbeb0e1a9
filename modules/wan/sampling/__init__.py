"""Sampling: WanModelSampler (sampler.py) equal to diffusers' pipelines; settings.py, pipeline.py, loras.py."""
