"""The cached dataset on a tiny TI2V-5B model: what is cached, when it is reused, and what bad input does."""

import logging
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors import safe_open

from modules.config.loading import config_from_dict
from modules.data.flow.video_dataset import load_sample
from modules.data.sources.concepts import DataError
from modules.data.sources.demo_data import DemoClip, moving_shape_frames, write_clip
from modules.util.video_export import write_video
from modules.wan.loading.loader import load_wan_model
from modules.wan.training.data_loader import WanBaseDataLoader

CPU = torch.device("cpu")


def load_entry(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as file:
        # Cloned: safe_open maps the file, and the test overwrites it in place.
        return {name: file.get_tensor(name).clone() for name in file.keys()}, file.metadata()


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_wan_model(
        tiny_model_dir("TI2V-5B"),
        transformer_dtype=torch.float32,
        text_encoder_dtype=torch.float32,
        vae_dtype=torch.float32,
    )


def prepare(model, data_dir: Path, workspace: Path, **data) -> WanBaseDataLoader:
    config = config_from_dict(
        {
            "model": {"base_path": str(model.model_path)},
            "data": {"concepts": [{"path": str(data_dir)}], "resolution": 64, "frames": 17, **data},
            "output": {"workspace_dir": str(workspace)},
        }
    )
    loader = WanBaseDataLoader()
    loader.prepare(model, config, CPU)
    return loader


def clip(name: str, frames: int, fps: float, width: int = 64, height: int = 64, **kw) -> DemoClip:
    return DemoClip(name, kw.get("shape", "circle"), kw.get("color", "red"), "blue", width, height, frames, fps)


def decode_all(path: Path) -> np.ndarray:
    """Every frame via PyAV directly: a reference independent of the pipeline's reader."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def direct_encode(model, frames: np.ndarray) -> torch.Tensor:
    """The VAE encode as the WAN pipelines do it, written out: posterior mode, (z - mean) / std."""
    pixels = torch.from_numpy(frames).float().permute(3, 0, 1, 2)[None] / 127.5 - 1
    z = model.vae.encode(pixels).latent_dist.mode()
    mean = torch.tensor(model.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(model.vae.config.latents_std).view(1, -1, 1, 1, 1)
    return ((z - mean) / std)[0]


def cache_files(workspace: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted((workspace / "cache").rglob("*.safetensors"))}


def test_cached_latents_equal_a_direct_vae_encode_of_the_same_frames(model, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    native = write_clip(clip("native", 20, 24), data)  # 24 fps = TI2V-5B's rate: frames 0..16
    fast = write_clip(clip("fast", 40, 48, color="green"), data)  # 48 fps: every second frame
    still = write_clip(clip("still", 1, 0, color="yellow"), data)
    loader = prepare(model, data, tmp_path / "run")
    by_source = {s.source: load_sample(s, loader.cache) for s in loader.samples}

    expected_native = direct_encode(model, decode_all(native)[:17])
    expected_fast = direct_encode(model, decode_all(fast)[0:33:2])
    from PIL import Image

    expected_still = direct_encode(model, np.array(Image.open(still).convert("RGB"))[None])
    # Tolerance: the pipelines multiply by 1/std where the reference divides: a few ulp.
    for source, expected in [(native, expected_native), (fast, expected_fast), (still, expected_still)]:
        cached = by_source[source]["latents"]
        assert cached.shape == expected.shape
        torch.testing.assert_close(cached, expected, rtol=1e-5, atol=1e-5)
    assert by_source[still]["latents"].shape[1] == 1  # an image is a one-frame video: one latent frame
    assert {s.bucket.frames for s in loader.samples} == {17, 1}


def test_second_run_reuses_everything_and_changes_invalidate_exactly_their_entries(model, tmp_path):
    data, workspace = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    first = write_clip(clip("first", 40, 24), data)  # chunk x2: two windows
    write_clip(clip("second", 20, 24, color="green"), data)
    settings = {"extraction_mode": "chunk", "max_windows_per_video": 2}
    loader = prepare(model, data, workspace, **settings)
    assert (loader.stats.videos_encoded, loader.stats.texts_encoded) == (3, 2)
    assert (
        prepare(model, data, workspace, **settings).stats.videos_encoded,
        prepare(model, data, workspace, **settings).stats.texts_encoded,
    ) == (0, 0)

    # A changed source file: only its two windows are encoded again.
    before = cache_files(workspace)
    write_video(moving_shape_frames(clip("first", 40, 24, color="white")), first, 24)
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))
    loader = prepare(model, data, workspace, **settings)
    assert (loader.stats.videos_encoded, loader.stats.texts_encoded) == (2, 0)
    # A changed caption: one text entry.
    first.with_suffix(".txt").write_text("a white circle", encoding="utf-8")
    loader = prepare(model, data, workspace, **settings)
    assert (loader.stats.videos_encoded, loader.stats.texts_encoded) == (0, 1)
    # A setting that changes every latent (resolution): every window, no caption.
    loader = prepare(model, data, workspace, **settings, resolution=96)
    assert (loader.stats.videos_encoded, loader.stats.texts_encoded) == (3, 0)
    # Nothing was deleted or rewritten on the way.
    after = cache_files(workspace)
    assert all(after[path] == content for path, content in before.items())


def test_bad_files_are_skipped_with_counted_warnings_and_the_cache_survives(model, tmp_path, caplog):
    data, workspace = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    good = write_clip(clip("good", 20, 24), data)
    prepare(model, data, workspace)
    cached = cache_files(workspace)

    truncated = write_clip(clip("truncated", 60, 24), data)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (data / "empty.mp4").write_bytes(b"")
    (data / "empty.txt").write_text("an empty file")
    (data / "notes.mp4").write_text("this is not a video\n")
    (data / "notes.txt").write_text("a text file named .mp4")
    no_caption = write_clip(clip("no_caption", 20, 24), data)
    no_caption.with_suffix(".txt").unlink()
    write_clip(clip("too_short", 4, 24), data)

    with caplog.at_level(logging.WARNING, logger="wan_trainer.data"):
        loader = prepare(model, data, workspace, min_frames=5)
    report = loader.report
    assert report.skipped_count("unreadable media") == 3
    assert set(report.skipped_paths("unreadable media")) == {truncated, data / "empty.mp4", data / "notes.mp4"}
    assert report.skipped_paths("missing caption") == [no_caption]
    assert report.skipped_paths("too short") == [data / "too_short.mp4"]
    for name in ("truncated.mp4", "empty.mp4", "notes.mp4", "no_caption.mp4", "too_short.mp4"):
        assert name in caplog.text
    assert "skipped 5 file(s)" in report.summary()
    assert [s.source for s in loader.samples] == [good]
    assert loader.stats.videos_encoded == 0  # the good clip's entry was reused ...
    after = cache_files(workspace)
    assert all(after[path] == content for path, content in cached.items())  # ... and is untouched


def test_missing_caption_as_error_names_the_file_and_the_fix(model, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = write_clip(clip("lonely", 20, 24), data)
    path.with_suffix(".txt").unlink()
    config_concept = {"path": str(data), "on_missing_caption": "error"}
    config = config_from_dict(
        {
            "model": {"base_path": str(model.model_path)},
            "data": {"concepts": [config_concept], "resolution": 64, "frames": 17},
            "output": {"workspace_dir": str(tmp_path / "run")},
        }
    )
    with pytest.raises(DataError, match=r"lonely\.mp4: no caption.*Fix:"):
        WanBaseDataLoader().prepare(model, config, CPU)


def test_a_corrupt_cache_entry_is_rebuilt(model, tmp_path):
    data, workspace = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    write_clip(clip("only", 20, 24), data)
    loader = prepare(model, data, workspace)
    entry = loader.cache.path_for("latents", loader.samples[0].latent_key)
    good_tensors, good_metadata = load_entry(entry)
    good = entry.read_bytes()
    entry.write_bytes(good[: len(good) // 2])
    loader = prepare(model, data, workspace)
    assert loader.stats.videos_encoded == 1
    # Deterministic encode: the rebuilt entry holds the original tensors and metadata. (Not compared byte for
    # byte: safetensors writes metadata keys in hash-map order, which varies between processes.)
    tensors, metadata = load_entry(entry)
    assert metadata == good_metadata
    assert tensors.keys() == good_tensors.keys()
    for name in tensors:
        assert torch.equal(tensors[name], good_tensors[name])


def test_cached_latents_are_of_the_frames_as_shown(model, tmp_path):
    """A rotated clip only PyAV reads (AV1, when the bundled ffmpeg encodes it; else H.264) and an anamorphic
    clip: their latents encode what ffmpeg plays (upright, stretched), not the stored frames."""
    from modules.data.clips.buckets import resize_and_crop
    from tests.media_fixtures import encoder_available, player_frames, with_rotation, write_pattern_video

    data = tmp_path / "data"
    data.mkdir()
    codec = ("-c:v", "libaom-av1", "-crf", "8", "-cpu-used", "8") if encoder_available("libaom-av1") else ()
    stored = write_pattern_video(tmp_path / "stored.mp4", count=20, fps=24, **({"codec": codec} if codec else {}))
    rotated = with_rotation(stored, data / "rotated.mp4", 90)
    wide = write_pattern_video(data / "wide.mp4", count=20, fps=24, width=64, height=64, filters="setsar=2/1")
    for path in (rotated, wide):
        path.with_suffix(".txt").write_text("a test pattern", encoding="utf-8")
    loader = prepare(model, data, tmp_path / "run", resolution=128)  # 64 px would round both to square buckets
    by_source = {s.source: (s, load_sample(s, loader.cache)["latents"]) for s in loader.samples}

    def encode(frames: np.ndarray, bucket) -> torch.Tensor:
        pixels = resize_and_crop(frames, bucket.width, bucket.height)[None]
        z = model.vae.encode(pixels).latent_dist.mode()
        mean = torch.tensor(model.vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(model.vae.config.latents_std).view(1, -1, 1, 1, 1)
        return ((z - mean) / std)[0]

    # Rotation: the same decoder and a lossless turn, so the match is exact. Pixel aspect: ffmpeg's bilinear
    # scaler and the pipeline's antialiased one differ at edges, so the cached entry is only far closer to the
    # shown frames than to the stored ones.
    for path, shown_size, closeness in [(rotated, (64, 96), 0.01), (wide, (128, 64), 0.5)]:
        sample, cached = by_source[path]
        assert sample.bucket.width / sample.bucket.height == pytest.approx(shown_size[0] / shown_size[1], rel=0.2)
        as_shown = encode(player_frames(path, *shown_size, scale_width=path == wide)[:17], sample.bucket)
        as_stored = encode(decode_all(stored if path == rotated else wide)[:17], sample.bucket)
        to_shown, to_stored = (cached - as_shown).abs().mean(), (cached - as_stored).abs().mean()
        assert to_shown < closeness * to_stored, path.name
