"""Per-part sources: which expert a file is (config slot, file name, or a question), a file in the wrong slot,
and hub ids for parts (a repo's part folder or one file of a repo) from a real Hugging Face cache layout on disk.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from modules.wan.loading.loader import load_wan_model
from modules.wan.loading.single_file_writer import write_single_file
from tests.test_single_file import F32, expect_error, write_parts

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def t2v(tiny_model_dir):
    base = tiny_model_dir("T2V-A14B")
    return base, load_wan_model(base, **F32)


def _file(tmp_path, name, module):
    return write_single_file(tmp_path / name, module, "transformer", naming="original")


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_config_slot_decides_when_names_are_silent(t2v, tmp_path):
    """Names without high/low: the slot is the expert. Putting the files the other way round loads them the other
    way round (the experts differ), so the slot, not the order or the file, decides."""
    base, ref = t2v
    assert not _same(ref.transformer, ref.transformer_2)  # the check below could fail
    a, b = (
        _file(tmp_path, "expert_a.safetensors", ref.transformer),
        _file(tmp_path, "expert_b.safetensors", ref.transformer_2),
    )
    loaded = load_wan_model(base, **F32, transformer_path=a, transformer_2_path=b)
    assert _same(loaded.transformer, ref.transformer) and _same(loaded.transformer_2, ref.transformer_2)
    flipped = load_wan_model(base, **F32, transformer_path=b, transformer_2_path=a)
    assert _same(flipped.transformer, ref.transformer_2) and _same(flipped.transformer_2, ref.transformer)


def test_one_silent_expert_file_asks_which_it_is(t2v, tmp_path):
    base, ref = t2v
    paths = write_parts(ref, tmp_path, "comfy_plain", torch.bfloat16)
    silent = _file(tmp_path, "my_wan22_t2v_14B.safetensors", ref.transformer)
    rest = dict(vae_path=paths["vae_path"], text_encoder_path=paths["text_encoder_path"])
    for slot, other in (
        ("transformer_path", "model.transformer_2_path"),
        ("transformer_2_path", "model.transformer_path"),
    ):
        message = expect_error(
            str(silent),
            "which expert is this T2V-A14B file, high-noise or low-noise?",
            "name says neither",
            other,
            "is empty",
            "Fix: if it is the",
            model_path=None,
            **{slot: silent},
            **rest,
        )
        assert "model.transformer_path" in message and "model.transformer_2_path" in message
    # The same file beside a folder that has transformer_2/: the config says it all, nothing to ask.
    loaded = load_wan_model(base, **F32, transformer_path=silent)
    assert loaded.transformer_2 is not None


def test_expert_named_by_file_in_the_wrong_slot(t2v, tmp_path):
    base, ref = t2v
    paths = write_parts(ref, tmp_path, "comfy_plain", torch.bfloat16)
    rest = dict(vae_path=paths["vae_path"], text_encoder_path=paths["text_encoder_path"])
    # Alone in the high-noise slot: move it, and give the high-noise file.
    expect_error(
        "swapped experts",
        "file name says low-noise",
        "move it to model.transformer_2_path",
        "set model.transformer_path to the high-noise file",
        model_path=None,
        transformer_path=paths["transformer_2_path"],
        **rest,
    )
    # Only the low-noise file, in its own slot: the high-noise expert is the missing part.
    expect_error(
        "missing part",
        "the transformer (high-noise expert",
        "model.transformer_path",
        model_path=None,
        transformer_2_path=paths["transformer_2_path"],
        **rest,
    )
    # Two files that both say high-noise.
    twin = _file(tmp_path, "copy_high_noise.safetensors", ref.transformer_2)
    expect_error(
        "both file names say high-noise",
        model_path=base,
        transformer_path=paths["transformer_path"],
        transformer_2_path=twin,
    )


def test_a_file_of_another_part_in_a_slot(t2v, tmp_path):
    base, ref = t2v
    paths = write_parts(ref, tmp_path, "comfy_plain", torch.bfloat16)
    expect_error(
        "wrong part",
        "the Wan2.1 VAE",
        "set it as model.vae_path",
        "model.transformer_path",
        model_path=base,
        transformer_path=paths["vae_path"],
    )
    expect_error(
        "wrong part",
        "T2V-A14B transformer",
        "model.transformer_path or model.transformer_2_path",
        model_path=base,
        text_encoder_path=paths["transformer_path"],
    )


# ---- hub ids for parts ------------------------------------------------------------------------------


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """`put(repo_id, file_or_folder, relative_path)`: a snapshot in the HF cache layout, offline.

    (refs/main -> snapshots/<commit>)
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)  # so an id is not a relative local path

    def put(repo_id: str, source, relative: str = ""):
        repo = tmp_path / "hf" / "hub" / f"models--{repo_id.replace('/', '--')}"
        target = repo / "snapshots" / COMMIT / relative
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True)
            shutil.copy(source, target)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(COMMIT)
        return repo / "snapshots" / COMMIT

    return put


def test_part_sources_from_hub_ids_in_the_local_cache(t2v, tmp_path, hf_cache):
    base, ref = t2v
    snapshot = hf_cache("tiny-org/wan-t2v", base)  # a diffusers repo: its transformer_2/ for one part
    files = tmp_path / "files"
    files.mkdir()
    high = _file(files, "wan2.2_t2v_high_noise_14B_fp16.safetensors", ref.transformer)
    hf_cache("tiny-org/repackaged", high, f"split_files/diffusion_models/{high.name}")
    loaded = load_wan_model(
        base,
        **F32,
        transformer_path="tiny-org/repackaged/split_files/diffusion_models/wan2.2_t2v_high_noise_14B_fp16.safetensors",
        transformer_2_path="tiny-org/wan-t2v",
    )
    assert _same(loaded.transformer, ref.transformer) and _same(loaded.transformer_2, ref.transformer_2)
    assert (snapshot / "transformer_2").is_dir()
    # Not cached: offline it says so and how to get it; allowed downloads lose to HF_HUB_OFFLINE.
    missing = "tiny-org/repackaged/split_files/vae/wan_2.1_vae.safetensors"
    expect_error(
        missing,
        "cannot resolve this hub id",
        "no local file",
        "local Hugging Face cache",
        "huggingface-cli download tiny-org/repackaged split_files/vae/wan_2.1_vae.safetensors",
        "allow_download",
        model_path=base,
        vae_path=missing,
    )
    expect_error("HF_HUB_OFFLINE is set", model_path=base, vae_path=missing, allow_download=True)
    expect_error(
        "cannot resolve this hub id", "tiny-org/not-cached", model_path=base, text_encoder_path="tiny-org/not-cached"
    )
