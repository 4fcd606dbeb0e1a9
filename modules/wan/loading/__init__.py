"""Building a WanModel: loader.load_wan_model / WanModelLoader is the one way in.

sources.py (where each part comes from, checks on sources), hub.py (hub ids), detection.py (diffusers folders
from their configs), file_detection.py + weight_file.py (single files from their headers, read by formats/headers.py),
expert_slots.py (which A14B expert a file is), part_folder.py / part_load.py (loading a folder / a file),
identity.py (the cache-key recipe), describe.py (one line on what a path holds, for the GUI), storage.py (int8/nf4
experts and fp8 UMT5 after loading), single_file_writer.py (single files in each layout the loader detects),
model_linears.py (a model folder's linear shapes, for LoRA checks).
"""
