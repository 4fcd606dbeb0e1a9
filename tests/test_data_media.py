"""Media reading (decord and the PyAV fallback agree), pipeline wiring checks and bucketed batching."""

import numpy as np
import pytest

from modules.data.flow.batching import BucketBatchSampler
from modules.data.flow.pipeline import Pipeline, PipelineError
from modules.data.flow.report import DataReport
from modules.data.flow.stages import AssignBuckets, CollectMedia, PlanWindows, ProbeMedia
from modules.data.media import media_io
from modules.data.sources.demo_data import DEMO_CLIPS, make_demo_data, moving_shape_frames


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_data")
    make_demo_data(folder)
    return folder


@pytest.mark.parametrize("clip", [c for c in DEMO_CLIPS if c.frames > 1], ids=lambda c: c.name)
def test_decord_and_pyav_probe_and_decode_the_same(demo_dir, clip):
    path = demo_dir / f"{clip.name}.mp4"
    for backend in ("decord", "pyav"):
        info = media_io.probe(path, backend)
        assert (info.frame_count, info.fps, info.width, info.height) == (clip.frames, clip.fps, clip.width, clip.height)
    indices = [clip.frames - 1, 0, 3, 3]
    by_decord = media_io.read_frames(path, indices, "decord")
    by_pyav = media_io.read_frames(path, indices, "pyav")
    assert np.array_equal(by_decord, by_pyav)
    # And both show the frames that were written (lossy H.264 at high quality: small mean error).
    written = moving_shape_frames(clip)[indices]
    assert np.abs(by_pyav.astype(int) - written).mean() < 6


def test_images_are_one_frame_videos(demo_dir):
    info = media_io.probe(demo_dir / "still_circle.png")
    assert info.is_image and info.frame_count == 1
    assert media_io.read_frames(demo_dir / "still_circle.png", [0]).shape == (1, 64, 80, 3)


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"plain text\n", "cannot be read as a video")])
def test_bad_files_raise_media_errors_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(media_io.MediaError, match=reason) as caught:
        media_io.probe(path)
    assert str(path) in str(caught.value)


def test_a_misordered_pipeline_fails_before_any_work(demo_dir):
    report = DataReport()
    with pytest.raises(PipelineError, match="AssignBuckets reads info, frames"):
        Pipeline([CollectMedia(report), AssignBuckets(64 * 64, 32), ProbeMedia(report)], inputs=("concept",))
    with pytest.raises(PipelineError, match="PlanWindows reads path, info"):
        Pipeline([PlanWindows(report, 24, 17, "head", 1, 1, 1)], inputs=("concept",))


def test_batches_hold_one_bucket_and_cover_the_epoch_in_a_seeded_order():
    buckets = ["a"] * 5 + ["b"] * 3 + ["c"]
    sampler = BucketBatchSampler(buckets, batch_size=2, seed=1)
    epoch0 = sampler.batches(0)
    assert sorted(i for batch in epoch0 for i in batch) == list(range(9))
    assert all(len({buckets[i] for i in batch}) == 1 for batch in epoch0)
    assert sampler.num_batches() == 3 + 2 + 1 == len(epoch0)
    assert epoch0 == BucketBatchSampler(buckets, 2, seed=1).batches(0)  # reproducible (resume)
    assert epoch0 != sampler.batches(1)  # reshuffled per epoch
    # Two processes with batch 1 see, step by step, the two halves of one process's batch of 2 (same bucket).
    halves = [BucketBatchSampler(buckets, 1, 1, rank=r, world_size=2).batches(0) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == [batch + batch if len(batch) == 1 else batch for batch in epoch0]
