"""The WAN 2.2 plugin (TI2V-5B, T2V-A14B, I2V-A14B), by role.

variants.py (the three models as data), model.py (WanModel), loading/ (one way in: every part from a
source), formats/ (key maps, LoRA and single-file formats), training/ (setups, experts, conditioning, data),
saving/, sampling/, embeddings/, tiny_models.py (real classes at tiny sizes, for tests and the demo),
memory_facts.py / part_report.py / benchmark_kit.py (what the planner, the diagnostics report and the benchmarks ask
of the family, through modules/registry.py). The inner layer order is tests/test_import_rules.py's WAN_LAYERS.
"""
