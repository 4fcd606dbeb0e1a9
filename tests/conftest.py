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
    """The synthetic demo clips (modules/data/sources/demo_data.py), written once per session."""
    from modules.data.sources.demo_data import make_demo_data

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


# ---- the fast loop ----------------------------------------------------------------------------------------------
# Tests over ~10 s on an idle 2-core machine carry the `slow` marker, so `bash scripts/run_tests.sh --fast`
# (pytest -m "not slow") leaves them out; the whole suite still runs them. A test may carry @pytest.mark.slow
# itself; these lists mark, in one place, the files where every test trains, samples or starts processes, and the
# single slow tests of otherwise quick files (found with --durations; scripts/run_tests.sh prints the 25 slowest).
SLOW_FILES = {
    "test_backup_crash.py",
    "test_backup_names.py",
    "test_backups.py",
    "test_benchmark.py",
    "test_block_swap.py",
    "test_both_experts.py",
    "test_convert.py",
    "test_demo.py",
    "test_diagnose.py",  # its shared fixture runs scripts/diagnose.py (about 25 s under load)
    "test_distributed.py",
    "test_distributed_launch.py",
    "test_ema.py",
    "test_embedding.py",
    "test_finetune.py",
    "test_fp8_storage.py",
    "test_gui.py",
    "test_lora_variants.py",
    "test_nix.py",
    "test_oom.py",
    "test_optimizer_training.py",
    "test_quantised_base.py",
    "test_reliability.py",
    "test_resume.py",
    "test_sample_script.py",
    "test_sample_training.py",
    "test_sampler_equality.py",
    "test_sampler_export.py",
    "test_single_file.py",
    "test_single_file_memory.py",
    "test_single_file_sources.py",
    "test_smoke_presets.py",
    "test_stop_request.py",
    "test_training.py",
    "test_variants_end_to_end.py",
}
SLOW_TESTS = {
    "tests/test_caption_dropout.py::test_batches_train_with_the_cached_empty_prompt",
    "tests/test_conditioning.py::test_i2v_a14b_condition_equals_the_pipeline",
    "tests/test_conditioning.py::test_ti2v_first_frame_latent_mask_and_timesteps_equal_the_pipeline",
    "tests/test_data_cache.py::test_cached_latents_are_of_the_frames_as_shown",
    "tests/test_data_cache.py::test_cached_latents_equal_a_direct_vae_encode_of_the_same_frames",
    "tests/test_data_cache.py::test_second_run_reuses_everything_and_changes_invalidate_exactly_their_entries",
    "tests/test_memory_planner.py::test_block_term_at_the_real_width",
    "tests/test_reliability_units.py::test_a_write_that_runs_out_of_space_keeps_the_previous_file",
    "tests/test_sample_export.py::test_chain_clip_two_starts_from_clip_ones_last_frame",
    "tests/test_sample_export.py::test_mp4_sample_decodes_as_requested_and_sidecar_agrees",
    "tests/test_vae_tiling.py::test_tiled_encode_is_within_the_documented_tolerance",
    "tests/test_security.py::test_no_hub_access_unless_allow_download",
    "tests/test_header_detection.py::test_public_files_are_recognised_from_the_header",
    "tests/test_user_errors.py::test_a_script_exits_2_with_one_line_on_a_user_error",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES or item.nodeid.split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def gui_display():
    """One X display (a private Xvfb and window manager when DISPLAY is unset) for every GUI test of the session:
    a display stopped after one test file while Tk still held a connection to it ended the whole test process
    (Xlib's I/O error handler exits with 1) when a later file's window next talked to X."""
    from tests.x_display import x_display

    with x_display() as name:
        yield name
