"""Building a WanModel: loader.load_wan_model / WanModelLoader is the one way in.

sources.py (where each part comes from, checks on sources), hub.py (hub ids), detection.py (diffusers folders
from their configs), file_detection.py + headers.py + weight_file.py (single files from their headers),
expert_slots.py (which A14B expert a file is), part_folder.py / part_load.py (loading a folder / a file),
identity.py (the cache-key recipe), describe.py (one line on what a path holds, for the GUI), storage.py (int8/nf4
experts and fp8 UMT5 after loading).
"""

__all__ = [
    "describe",
    "detection",
    "expert_slots",
    "file_detection",
    "headers",
    "hub",
    "identity",
    "loader",
    "part_folder",
    "part_load",
    "sources",
    "storage",
    "weight_file",
]
