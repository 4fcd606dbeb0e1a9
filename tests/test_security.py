"""Security rules as tests: oversized safetensors headers refused before allocating, .pth only through
weights_only, no hub access unless model.allow_download, and no trust_remote_code anywhere in the tree."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from modules.base.model_loader import ModelLoadError
from modules.wan.formats.headers import read_header
from modules.wan.formats.lora_compatibility import LoraCompatibilityError, read_lora_info

REPO = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = ("modules", "scripts")


def source_files():
    for folder in SOURCE_FOLDERS:
        yield from sorted((REPO / folder).rglob("*.py"))


def test_header_claiming_a_huge_length_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes((1 << 62).to_bytes(8, "little") + b'{"a": ' + b" " * 100)
    tracemalloc.start()
    with pytest.raises(ModelLoadError, match="announce a 4611686018427387904-byte header"):
        read_header(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20, peak  # nothing near the claimed size (or even a megabyte) was allocated
    with pytest.raises(LoraCompatibilityError, match=re.escape(str(path))):
        read_lora_info(path)  # the LoRA readers (sampler, continue_from, convert_model) go through read_header


class _RunsCode:
    """A pickle payload that would create a file when unpickled without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pth_files_are_only_read_with_weights_only(tmp_path):
    from modules.wan.loading.weight_file import _torch_load

    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    import torch

    torch.save({"weight": torch.zeros(2), "payload": _RunsCode(marker)}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(ModelLoadError, match="weights_only"):
        _torch_load(path, "vae")
    assert not marker.exists()
    # And no other torch.load in the tree goes around it.
    for file in source_files():
        for match in re.finditer(r"torch\.load\((?P<args>[^)]*)\)", file.read_text(encoding="utf-8")):
            assert "weights_only=True" in match["args"], f"{file}: torch.load without weights_only=True"


_NETWORK_PROBE = """
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network disabled by the test")
socket.getaddrinfo = refuse
socket.create_connection = refuse
socket.socket.connect = lambda self, *a: refuse(*a)
sys.path.insert(0, sys.argv[1])
from modules.base.model_loader import ModelLoadError
from modules.wan.loading.loader import resolve_model_path
try:
    resolve_model_path("Wan-AI/Wan2.2-TI2V-5B-Diffusers", allow_download=sys.argv[2] == "1")
    outcome = "resolved"
except ModelLoadError as error:
    outcome = str(error)
print(json.dumps({"attempts": attempts, "outcome": outcome}))
"""


@pytest.mark.parametrize("allow_download", [False, True])
def test_no_hub_access_unless_allow_download(tmp_path, allow_download):
    """With the hub's offline switches unset and an empty HF cache, resolving a hub id touches the network only
    when model.allow_download is set (the allowed case is the control: it proves an attempt would be seen)."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update({"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"})
    done = subprocess.run(
        [sys.executable, "-c", _NETWORK_PROBE, str(REPO), "1" if allow_download else "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if allow_download:
        assert result["attempts"], result
    else:
        assert result["attempts"] == [], result
        assert "model.allow_download" in result["outcome"]


def test_no_trust_remote_code_in_the_tree():
    """Remote code from a model repo never runs: every mention of the option in our code sets it to False."""
    option = "trust_remote_code"
    for file in [*source_files(), *sorted((REPO / "tests").rglob("*.py"))]:
        for line_number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if option in line and file.name != Path(__file__).name:
                assert re.search(option + r"\s*=\s*False\b", line), f"{file}:{line_number}: {line.strip()}"
