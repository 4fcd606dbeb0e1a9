"""Training benchmarks: the FLOP formula, device peaks, result files and regression checks.

`scripts/benchmark.py` is the entry point; docs/benchmarks.md explains the numbers.
"""
