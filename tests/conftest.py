"""Shared fixtures: tiny real-class WAN models written to disk once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from modules.wan.tiny_models import write_tiny_model  # noqa: E402


@pytest.fixture
def one_torch_thread():
    """Tiny models are dominated by thread overhead on a shared 2-core machine: run them on one thread.
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """`tiny_model_dir("TI2V-5B")` -> path of a tiny diffusers folder of that variant (built once)."""
    built: dict[str, Path] = {}

    def get(variant_name: str = "TI2V-5B") -> Path:
        if variant_name not in built:
            root = tmp_path_factory.mktemp("tiny_models")
            built[variant_name] = write_tiny_model(variant_name, root / variant_name)
        return built[variant_name]

    return get


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory):
    """The synthetic demo clips (modules/data/demo_data.py), written once per session."""
    from modules.data.demo_data import make_demo_data

    folder = tmp_path_factory.mktemp("demo_data")
    make_demo_data(folder)
    return folder


@pytest.fixture(scope="session")
def demo_overrides(tiny_model_dir, demo_data_dir, tmp_path_factory):
    """`demo_overrides(workspace)` -> --config-value strings that point the demo preset at the tiny TI2V-5B
    model and demo data, with one shared cache (encoded once) and no samples or TensorBoard (speed)."""
    cache = tmp_path_factory.mktemp("demo_cache")

    def get(workspace) -> list[str]:
        return [
            f"model.base_path={tiny_model_dir('TI2V-5B')}",
            f"data.concepts.0.path={demo_data_dir}",
            f"output.workspace_dir={workspace}",
            f"data.cache_dir={cache}",
            "sampling.samples=[]",
            "output.tensorboard=false",
            "output.save_every_steps=0",
        ]

    return get
