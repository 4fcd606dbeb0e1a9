"""Sampling settings: what each sample shows, when samples are made during training, how they are written.

Kept apart from train_config.py because scripts/sample.py builds SampleConfig on its own, without a
training run; train_config.py imports these classes for its `sampling` section.
"""

from __future__ import annotations

from dataclasses import dataclass

from modules.config.fields import setting

SCHEDULERS = ("unipc", "euler")
SAMPLE_FORMATS = ("mp4", "webm", "png")
VALIDATION_QUANTILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


@dataclass
class SampleConfig:
    prompt: str = setting(help="What the sample shows", label="Prompt")
    negative_prompt: str = setting(
        "", help="What to steer away from (classifier-free guidance)", label="Negative prompt"
    )
    width: int = setting(
        256,
        help="Width in pixels (rounded down to the model's multiple: 32 for TI2V-5B, 16 for A14B)",
        min=16,
        label="Width",
        unit="px",
    )
    height: int = setting(
        256,
        help="Height in pixels (rounded down to the model's multiple: 32 for TI2V-5B, 16 for A14B)",
        min=16,
        label="Height",
        unit="px",
    )
    frames: int = setting(
        17, help="Frames; rounded up to the nearest 4n+1 at or above (the sidecar records both)", min=1, label="Frames"
    )
    seed: int = setting(0, help="Noise seed (clip k of a chain uses seed + k - 1)", min=0, label="Seed")
    steps: int = setting(30, help="Denoising steps", min=1, label="Steps")
    guidance_scale: float | None = setting(
        None,
        help="CFG scale (of the high-noise expert for A14B); empty: the model's official value (5.0 TI2V-5B, 4.0 "
        "T2V-A14B, 3.5 I2V-A14B)",
        min=0.0,
        label="Guidance scale",
    )
    guidance_scale_2: float | None = setting(
        None,
        help="CFG scale of the low-noise expert (A14B); empty: the official value if guidance_scale is empty too, "
        "else guidance_scale",
        min=0.0,
        label="Guidance scale, low-noise expert",
    )
    flow_shift: float | None = setting(
        None, help="Sampling flow shift; empty: the model's scheduler default", min=0.01, label="Flow shift"
    )
    scheduler: str = setting(
        "unipc",
        help="Sampler: UniPC (what the Wan-AI repos ship) or flow-matching Euler",
        choices=SCHEDULERS,
        label="Sampler",
    )
    fps: int | None = setting(
        None,
        help="Frame rate of the written video; empty: the model's native rate (24 TI2V-5B, 16 A14B)",
        min=1,
        label="Frame rate",
        unit="fps",
    )
    start_image: str = setting(
        "",
        path="file",
        file_types=(("Images", "*.png *.jpg *.jpeg *.webp *.bmp"), ("All files", "*")),
        help="Start image for image-to-video (required for I2V-A14B, optional for TI2V-5B; not for T2V-A14B); "
        "stretched to width x height as diffusers does",
        label="Start image",
    )
    clips: int = setting(
        1,
        help="Clips chained by continuity: each clip after the first starts from the previous clip's last frame "
        "(image-to-video)",
        min=1,
        max=100,
        label="Chained clips",
    )
    next_prompts: list[str] = setting(
        default_factory=list,
        help="Prompts of clips 2, 3, ... of a chain; a missing entry reuses prompt",
        label="Prompts of the next clips",
    )


@dataclass
class SamplingConfig:
    samples: list[SampleConfig] = setting(
        default_factory=list,
        help="Sample definitions, written under <workspace>/samples and to TensorBoard",
        label="Samples",
    )
    sample_at_end: bool = setting(True, help="Write the samples after the last step", label="Sample at the end")
    sample_before_training: bool = setting(
        False,
        help="Also write the samples before the first step (what the base model makes)",
        label="Sample before training",
    )
    every_steps: int = setting(
        0, help="Write the samples every N optimizer steps (0: off)", min=0, label="Sample every", unit="steps"
    )
    every_epochs: int = setting(
        0, help="Write the samples at the end of every N-th epoch (0: off)", min=0, label="Sample every", unit="epochs"
    )
    every_minutes: float = setting(
        0.0,
        help="Write the samples when N minutes have passed since the last ones (0: off)",
        min=0.0,
        label="Sample every",
        unit="minutes",
    )
    format: str = setting(
        "mp4",
        help="Video file format: MP4 (H.264, yuv420p), WebM (VP9) or a folder of PNG frames",
        choices=SAMPLE_FORMATS,
        label="Video format",
    )
    quality: int | None = setting(
        None, help="Encoder CRF (lower is better); empty: 18 for MP4, 30 for WebM", min=0, max=63, label="Quality (CRF)"
    )
    static_threshold: float = setting(
        1.0,
        help="A sample whose mean absolute difference between consecutive frames (0..255 scale) is below this is "
        "flagged as frozen",
        min=0.0,
        label="Frozen-video threshold",
    )
    tensorboard: bool = setting(
        True,
        help="Also log samples to TensorBoard (a video if moviepy 1.x is installed, else a frame strip image)",
        label="Samples to TensorBoard",
    )
    validation_concept: str = setting(
        "",
        help="Folder of held-out videos with .txt captions; its loss is logged per timestep quantile (empty: off)",
        path="folder",
        label="Validation folder",
    )
    validation_every_steps: int = setting(
        0,
        help="Measure the validation loss every N optimizer steps (0: off)",
        min=0,
        label="Validation every",
        unit="steps",
    )
    validation_quantiles: list[float] = setting(
        default_factory=lambda: list(VALIDATION_QUANTILES),
        help="Noise levels (sigma = t / 1000) at which the validation loss is measured",
        label="Validation noise levels",
    )
    validation_seed: int = setting(
        1234,
        help="Seed of the validation noise (fixed, so losses are comparable between steps)",
        min=0,
        label="Validation seed",
    )
