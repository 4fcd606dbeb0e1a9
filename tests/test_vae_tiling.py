"""memory.vae_tiling and out-of-memory while caching, on the real tiny VAEs.

Tiled encodes (diffusers' AutoencoderKLWan tiling, small tiles so a tiny clip has seams) stay within the tolerance
docs/presets.md states of the untiled encode, and equal it exactly where one tile covers the frame; the setting
decides tiling as documented ('auto' from the planner for the card); a tiled cache has its own key. A VAE that
runs out of memory while caching (the real encoder raising torch.OutOfMemoryError from a forward hook) stops the
run with a message naming the clip and the fix (the real VAE encodes the first window; the second raises the
exception torch raises), and keeps the entries cached before it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modules.config.loading import config_from_dict
from modules.config.train_config import TrainConfig
from modules.data.flow.stages import CachingOutOfMemory
from modules.trainer.guards.oom import EXIT_OUT_OF_MEMORY
from modules.wan.tiny_models import build_vae
from modules.wan.training.data_loader import WanBaseDataLoader
from modules.wan.vae_tiling import apply_vae_tiling, tiling_identity, vae_tiling_wanted
from modules.wan.variants import VARIANTS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
# docs/presets.md: relative Frobenius distance of tiled from untiled latents on the tiny random VAEs.
TOLERANCE = {"T2V-A14B": 0.35, "TI2V-5B": 0.08}
SMALL_TILES = {
    "tile_sample_min_height": 96,
    "tile_sample_min_width": 96,
    "tile_sample_stride_height": 64,
    "tile_sample_stride_width": 64,
}


def smooth_clip(height: int, width: int, frames: int = 5) -> torch.Tensor:
    torch.manual_seed(1)
    coarse = torch.rand(1, 3, frames, 8, 8) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(frames, height, width), mode="trilinear")


@pytest.mark.parametrize("variant_name", ["T2V-A14B", "TI2V-5B"])
def test_tiled_encode_is_within_the_documented_tolerance(variant_name):
    torch.manual_seed(0)  # build_vae's layers draw their initial weights from the global RNG
    vae = build_vae(VARIANTS[variant_name], torch.Generator().manual_seed(0)).eval()
    clip = smooth_clip(128, 192)
    with torch.no_grad():
        untiled = vae.encode(clip).latent_dist.mode()
        apply_vae_tiling(vae, True, SMALL_TILES)
        tiled = vae.encode(clip).latent_dist.mode()
        one_tile = vae.encode(clip[..., :96, :96]).latent_dist.mode()  # the frame fits one tile: no seams
        apply_vae_tiling(vae, False)
        assert not vae.use_tiling
        assert torch.equal(one_tile, vae.encode(clip[..., :96, :96]).latent_dist.mode())
    distance = float((tiled - untiled).norm() / untiled.norm())
    assert 0 < distance <= TOLERANCE[variant_name], distance


def real_config(**memory) -> TrainConfig:
    config = TrainConfig()
    config.model.variant, config.model.base_path = "TI2V-5B", VARIANTS["TI2V-5B"].real_repo_id
    config.data.resolution, config.data.frames = 960, 121  # 1280x704x121
    for name, value in memory.items():
        setattr(config.memory, name, value)
    return config


def test_setting_decides_tiling_auto_by_the_planner():
    assert vae_tiling_wanted(real_config(vae_tiling="on"), None)
    assert not vae_tiling_wanted(real_config(vae_tiling="off"), 16)
    assert not vae_tiling_wanted(real_config(), None)  # no GPU: nothing to fit
    from modules.planning import plan_memory

    caching = plan_memory(real_config(vae_tiling="off")).phase("caching").total / 2**30
    assert vae_tiling_wanted(real_config(), caching - 0.5)  # the untiled encode would not fit
    assert not vae_tiling_wanted(real_config(), caching + 40)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from modules.wan.loading.loader import load_wan_model

    return load_wan_model(
        tiny_model_dir("T2V-A14B"),
        transformer_dtype=torch.float32,
        text_encoder_dtype=torch.float32,
        vae_dtype=torch.float32,
    )


def prepare(model, data_dir: Path, workspace: Path, **memory) -> WanBaseDataLoader:
    config = config_from_dict(
        {
            "model": {"base_path": str(model.model_path)},
            "data": {"concepts": [{"path": str(data_dir)}], "resolution": 64, "frames": 9},
            "output": {"workspace_dir": str(workspace)},
            "memory": memory,
        }
    )
    loader = WanBaseDataLoader()
    loader.prepare(model, config, torch.device("cpu"))
    return loader


def test_a_tiled_cache_has_its_own_key(model, demo_data_dir, tmp_path):
    plain = prepare(model, demo_data_dir, tmp_path / "a", vae_tiling="off")
    assert plain.stats.videos_encoded > 0 and tiling_identity(model.vae) == ""
    tiled = prepare(model, demo_data_dir, tmp_path / "a", vae_tiling="on")
    assert model.vae.use_tiling and tiling_identity(model.vae).startswith(":tiled=256x256/192x192")
    assert tiled.stats.videos_encoded == plain.stats.videos_encoded  # nothing reused across tiling
    again = prepare(model, demo_data_dir, tmp_path / "a", vae_tiling="off")
    assert again.stats.videos_encoded == 0 and not model.vae.use_tiling


def test_caching_out_of_memory_names_the_clip_and_keeps_what_was_cached(model, demo_data_dir, tmp_path, monkeypatch):
    # On the class: the VAE is read when caching first needs it and released after (modules/wan/encoder_parts.py).
    real_encode, calls = type(model.vae).encode, []

    def encode_then_run_out_of_memory(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # the second window: what torch raises when an allocation fails
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_encode(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(type(model.vae), "encode", encode_then_run_out_of_memory)
        with pytest.raises(CachingOutOfMemory) as caught:
            prepare(model, demo_data_dir, tmp_path / "oom", vae_tiling="off")
    message = str(caught.value)
    assert str(demo_data_dir) in message and "window" in message
    assert "data.resolution or data.frames" in message and "memory.vae_tiling=on" in message
    assert caught.value.exit_code == EXIT_OUT_OF_MEMORY
    # The first clip's entry survived; a rerun without the fault encodes only the rest.
    rerun = prepare(model, demo_data_dir, tmp_path / "oom", vae_tiling="off")
    assert rerun.stats.videos_encoded == len(rerun.samples) - 1
