"""TrainConfig: every setting of a training run, declared once with its type, default, help and limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from modules.config.fields import setting
from modules.config.memory_config import QUANTISED_DTYPES, MemoryConfig
from modules.config.optimizer_config import (
    OPTIMIZERS,
    SCHEDULE_FREE,
    AdafactorConfig,
    CameConfig,
    LionConfig,
    ProdigyConfig,
    ScheduleFreeConfig,
)

# Re-exported: sampling settings live in their own file (scripts/sample.py uses them without a TrainConfig).
from modules.config.sampling_config import SampleConfig, SamplingConfig  # noqa: F401
from modules.util.dtype_names import DTYPE_NAMES

# The dtype names live on the ground floor (modules/util/dtype_names.py; device.py maps them to torch dtypes).
DTYPES = DTYPE_NAMES
# The one home of these names: modules/wan/variants.py checks that its table holds exactly these variants.
VARIANT_CHOICES = ("auto", "TI2V-5B", "T2V-A14B", "I2V-A14B")
CAPTION_SOURCES = ("txt", "filename", "text")  # a .txt beside the media, the file name, or caption_text
MISSING_CAPTION_RULES = ("skip", "use_text", "error")


BASE_LORA_EXPERTS = ("auto", "high_noise", "low_noise", "both")


@dataclass
class BaseLoraConfig:
    path: str = setting(
        path="file",
        file_types=(("LoRA", "*.safetensors"), ("All files", "*")),
        help="A LoRA file (LoRA, DoRA, LoHa or LoKr; ComfyUI, kohya or diffusers layout) to merge into the base "
        "weights before training, e.g. a distillation LoRA you sample with; for A14B also the <stem> of a "
        "<stem>_high_noise / <stem>_low_noise pair",
        label="LoRA file",
    )
    multiplier: float = setting(1.0, help="Strength of the merge (the high-noise expert's for A14B)", label="Strength")
    multiplier_2: float | None = setting(
        None, help="Strength on the low-noise expert (A14B); empty: multiplier", label="Strength, low-noise expert"
    )
    expert: str = setting(
        "auto",
        help="Which A14B expert a single file goes into; auto: from its file name / metadata, else both",
        choices=BASE_LORA_EXPERTS,
        label="Expert",
    )


@dataclass
class ModelConfig:
    base_path: str = setting(
        path="folder",
        help="Diffusers folder of a WAN 2.2 model, or a hub id such as Wan-AI/Wan2.2-TI2V-5B-Diffusers; gives the "
        "tokenizer and every part without its own *_path",
        label="Base model (diffusers folder or hub id)",
    )
    variant: str = setting(
        "auto",
        help="Which WAN 2.2 model; 'auto' detects it from the folder",
        choices=VARIANT_CHOICES,
        label="Model variant",
    )
    allow_download: bool = setting(
        False, help="Allow downloading a hub id that is not in the local Hugging Face cache", label="Allow hub download"
    )
    transformer_path: str = setting(
        "",
        path="file_or_folder",
        file_types=(("Weights", "*.safetensors *.pth *.pt"), ("All files", "*")),
        help="Optional source of the transformer (high-noise expert for A14B): a single file such as "
        "wan2.2_t2v_high_noise_14B_fp16.safetensors, a part folder, or a diffusers folder; empty: from base_path",
        label="Transformer file or folder",
    )
    transformer_2_path: str = setting(
        "",
        path="file_or_folder",
        file_types=(("Weights", "*.safetensors *.pth *.pt"), ("All files", "*")),
        help="Optional source of the low-noise expert (A14B), e.g. wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors; "
        "empty: from base_path",
        label="Low-noise expert file or folder",
    )
    vae_path: str = setting(
        "",
        path="file_or_folder",
        file_types=(("Weights", "*.safetensors *.pth *.pt"), ("All files", "*")),
        help="Optional source of the VAE: wan_2.1_vae / wan2.2_vae .safetensors, Wan2.1_VAE.pth / Wan2.2_VAE.pth, or "
        "a folder; empty: from base_path",
        label="VAE file or folder",
    )
    text_encoder_path: str = setting(
        "",
        path="file_or_folder",
        file_types=(("Weights", "*.safetensors *.pth *.pt"), ("All files", "*")),
        help="Optional source of the UMT5 encoder: umt5_xxl_fp16 / fp8_e4m3fn_scaled .safetensors, "
        "models_t5_umt5-xxl-enc-bf16.pth, or a folder; empty: from base_path",
        label="Text encoder (UMT5) file or folder",
    )
    transformer_dtype: str = setting(
        "bfloat16",
        help="Storage dtype of the frozen transformer weights; float8_e4m3fn is storage only (block linears in fp8 "
        "with a scale, 1 byte per weight; everything computes in training.train_dtype, which must then be "
        "bfloat16 or float16; not for training_method full); int8 and nf4 store the block linears through "
        "bitsandbytes (1 and 0.5 bytes per weight; LoRA and embedding training and sampling only; "
        "docs/block_swap.md)",
        choices=(*DTYPES, "float8_e4m3fn", *QUANTISED_DTYPES),
        label="Transformer storage dtype",
    )
    text_encoder_dtype: str = setting(
        "bfloat16",
        help="Dtype of the UMT5 text encoder (used while caching and for sample prompts); float8_e4m3fn stores its "
        "attention and gated-input linears in fp8 with a scale (about 70% of the bf16 size; the feed-forward output "
        "stays bf16) and computes in bfloat16",
        choices=(*DTYPES, "float8_e4m3fn"),
        label="Text encoder dtype",
    )
    vae_dtype: str = setting(
        "float32", help="Dtype of the VAE (used only while caching and sampling)", choices=DTYPES, label="VAE dtype"
    )
    text_max_length: int = setting(
        512,
        help="Text tokens per caption; the WAN pipelines use 512",
        min=1,
        max=512,
        label="Caption length",
        unit="tokens",
    )
    base_loras: list[BaseLoraConfig] = setting(
        default_factory=list,
        help="LoRAs merged into the transformer weights once at load, before any fp8/int8/nf4 storage "
        "(docs/lora_format.md); samples during training use the merged base, and the trained file records them",
        label="LoRAs merged into the base",
    )


@dataclass
class LoraConfig:
    type: str = setting(
        "lora",
        help="Adapter type: lora (B @ A), loha (Hadamard product of two low-rank pairs), lokr (Kronecker product); "
        "see docs/lora_format.md",
        choices=("lora", "loha", "lokr"),
        label="Adapter type",
    )
    rank: int = setting(
        32,
        help="Rank (lokr: the rank of a decomposed factor; large ranks keep factors full)",
        min=1,
        max=1024,
        label="Rank",
    )
    alpha: float = setting(32.0, help="Alpha; the update is scaled by alpha / rank", min=0.0, label="Alpha")
    dropout: float = setting(
        0.0, help="Dropout on the LoRA input (loha/lokr: rank dropout of the update)", min=0.0, max=1.0, label="Dropout"
    )
    use_dora: bool = setting(
        False,
        help="DoRA: also train a magnitude per input column of each weight, as ComfyUI applies dora_scale "
        "(lora.type lora only)",
        label="DoRA (train magnitudes too)",
    )
    factor: int = setting(
        -1,
        help="lokr: size of the first Kronecker factor's dimensions (-1: as square as the layer allows)",
        min=-1,
        label="LoKr factor",
    )
    layer_filter: str = setting(
        "",
        help="Comma-separated substrings or a regex of module names to train (empty: all attention and feed-forward "
        "linears)",
        label="Layers to train",
    )
    continue_from: str = setting(
        "",
        path="file",
        file_types=(("LoRA", "*.safetensors"), ("All files", "*")),
        help="A LoRA file to start from (an A14B pair by its stem); it must be for this model, "
        "with this rank and layers",
        label="Continue from LoRA",
    )


@dataclass
class FineTuneConfig:
    """Full fine-tuning of the transformer(s); see docs/full_finetune.md."""

    block_filter: str = setting(
        "",
        help="Which transformer weights train: comma-separated block indices or ranges ('0-9,30') and/or name "
        "substrings or regexes ('attn2', 'ffn'); empty: every weight",
        label="Weights to train",
    )
    weight_dtype: str = setting(
        "float32",
        help="Dtype of a trained expert's weights while training; float32 keeps updates that bfloat16 would round away",
        choices=DTYPES,
        label="Trained weights dtype",
    )
    save_diffusers: bool = setting(
        True,
        help="Write a diffusers model folder usable as model.base_path (<output stem>-diffusers/)",
        label="Save a diffusers folder",
    )
    save_single_file: bool = setting(
        True,
        help="Write one safetensors file per trained expert with the original WAN key names (the layout ComfyUI loads)",
        label="Save single files (ComfyUI)",
    )


@dataclass
class EmbeddingConfig:
    """Textual inversion on the UMT5 text encoder; see docs/embeddings.md."""

    placeholder: str = setting(
        "<concept>", help="The word that stands for the embedding in captions and prompts", label="Placeholder word"
    )
    num_vectors: int = setting(
        1, help="Token vectors of the embedding (more vectors hold more detail)", min=1, max=75, label="Vectors"
    )
    init_text: str = setting(
        "",
        help="Text whose token embeddings initialise the vectors (cycled to num_vectors); empty: random at the scale "
        "of the embedding table",
        label="Initial text",
    )
    continue_from: str = setting(
        "",
        path="file",
        file_types=(("Embedding", "*.safetensors"), ("All files", "*")),
        help="An embedding .safetensors file to continue training (its placeholder and vectors replace the settings "
        "above)",
        label="Continue from embedding",
    )
    frozen_embeddings: list[str] = setting(
        default_factory=list,
        path="file",
        file_types=(("Embedding", "*.safetensors"), ("All files", "*")),
        help="Embedding files loaded, not trained, in every training method; "
        "their placeholders may be used in captions",
        label="Frozen embeddings",
    )


@dataclass
class ExpertsConfig:
    """WAN 2.2 A14B has two experts: high-noise (t >= boundary) and low-noise (t < boundary)."""

    train: str = setting(
        "both",
        help="Which expert(s) of an A14B model to train (ignored for TI2V-5B)",
        choices=("both", "high_noise", "low_noise"),
        label="Experts to train",
    )
    boundary_ratio: float | None = setting(
        None,
        help="Expert boundary as a fraction of 1000 timesteps; empty: the model's (0.875 T2V, 0.9 I2V)",
        min=0.0,
        max=1.0,
        label="Expert boundary",
    )
    shared_lora: bool = setting(
        False, help="Train one LoRA shared by both experts instead of one per expert", label="One LoRA for both experts"
    )
    high_noise_learning_rate: float | None = setting(
        None,
        help="Learning rate of the high-noise expert; empty: training.learning_rate",
        min=0.0,
        label="High-noise learning rate",
    )
    low_noise_learning_rate: float | None = setting(
        None,
        help="Learning rate of the low-noise expert; empty: training.learning_rate",
        min=0.0,
        label="Low-noise learning rate",
    )
    high_noise_step_ratio: float | None = setting(
        None,
        help="Share of steps given to the high-noise expert; empty: the share of the timestep distribution above the "
        "boundary",
        min=0.0,
        max=1.0,
        label="High-noise share of steps",
    )
    switch_every_steps: int = setting(
        1,
        help="Optimizer steps in a row on one expert before the next draw (larger means fewer expert swaps)",
        min=1,
        label="Steps per expert turn",
        unit="steps",
    )
    offload_inactive_expert: bool = setting(
        True,
        help="Keep the expert that is not training in CPU memory, so only one 14B expert is on the GPU",
        label="Offload the idle expert to CPU",
    )


@dataclass
class ConceptConfig:
    path: str = setting(help="Folder of videos and images", path="folder")
    enabled: bool = setting(
        True,
        label="Enabled",
        help="Train this concept; off keeps it in the config (and the window's concept cards) without training it",
    )
    repeats: int = setting(1, help="How many times each item is seen per epoch", min=1)
    caption_source: str = setting(
        "txt",
        help="Caption from a .txt file beside the media, the file name, or caption_text",
        choices=CAPTION_SOURCES,
    )
    caption_text: str = setting(
        "",
        help="The caption when caption_source is 'text', and the fallback for missing captions when "
        "on_missing_caption is 'use_text'",
    )
    on_missing_caption: str = setting(
        "skip", help="What to do with media that has no caption file", choices=MISSING_CAPTION_RULES
    )
    include_subdirectories: bool = setting(False, help="Also collect media from subfolders")
    loss_weight: float = setting(1.0, help="Multiplier of this concept's loss (2: counts twice as much)", min=0.0)
    caption_dropout: float | None = setting(
        None,
        help="This concept's share of clips trained with the empty prompt (e.g. 0 for a concept whose captions carry "
        "the trigger, 0.2 for a style); empty: data.caption_dropout",
        min=0.0,
        max=1.0,
    )
    resolution: int | None = setting(
        None, help="This concept's training area as the side of a square; empty: data.resolution", min=16, max=4096
    )
    frames: int | None = setting(
        None, help="This concept's frames per window (4n+1); empty: data.frames", min=1, max=1025
    )
    flip: bool = setting(
        False,
        help="Also train every window mirrored left-right (cached as its own entries); off when captions say "
        "left or right",
    )
    on_missing_mask: str = setting(
        "train_all",
        help="With data.masked_training, a file without a <stem>-masklabel mask: train all of it, or skip the file",
        choices=("train_all", "skip"),
    )


@dataclass
class DataConfig:
    concepts: list[ConceptConfig] = setting(
        default_factory=list, help="The training data (or use concepts_file)", label="Concepts"
    )
    masked_training: bool = setting(
        False,
        help="Weight the loss by a mask beside each file (<stem>-masklabel.png, or a video of the same length): "
        "white trains, black gets unmasked_weight (docs/data_pipeline.md)",
        label="Masked training",
    )
    unmasked_weight: float = setting(
        0.1,
        help="Loss weight of the black (unmasked) area with masked_training; 0 ignores it",
        min=0.0,
        max=1.0,
        label="Unmasked loss weight",
    )
    concepts_file: str = setting(
        "",
        path="file",
        file_types=(("JSON", "*.json"), ("All files", "*")),
        help="A JSON file holding a list of concepts (relative paths are relative to the config file)",
        label="Concepts file",
    )
    resolution: int = setting(
        480,
        help="Training area as the side of a square (480 -> about 480x480 pixels, aspect kept)",
        min=16,
        max=4096,
        label="Resolution",
        unit="px",
    )
    frames: int = setting(
        81,
        help="Frames per training window; must be 4n+1 (1, 5, ..., 81, ..., 121)",
        min=1,
        max=1025,
        label="Frames per window",
        unit="4n+1",
    )
    min_frames: int = setting(
        1,
        help="Clips shorter than this (after fps resampling) are skipped; shorter clips above it go to a smaller 4n+1 "
        "bucket",
        min=1,
        label="Shortest clip",
        unit="frames",
    )
    fps: float = setting(
        0.0,
        help="Target frame rate; 0 uses the model's native rate (24 for TI2V-5B, 16 for A14B)",
        min=0.0,
        label="Frame rate",
        unit="fps",
    )
    extraction_mode: str = setting(
        "head",
        help="How windows are cut from a clip",
        choices=("head", "chunk", "slide", "uniform", "full"),
        label="Window extraction",
    )
    max_windows_per_video: int = setting(
        1, help="Upper bound of windows per clip (chunk, slide, uniform)", min=1, label="Windows per clip"
    )
    slide_stride: int = setting(
        8,
        help="Frames between window starts in 'slide' mode (at the target fps)",
        min=1,
        label="Slide stride",
        unit="frames",
    )
    cache_dir: str = setting(
        "",
        help="Where cached latents and text embeddings live (default: <workspace>/cache)",
        path="folder",
        label="Cache folder",
    )
    caption_dropout: float = setting(
        0.0,
        help="Share of clips trained with the empty prompt instead of their captions, drawn clip by clip (keeps "
        "classifier-free guidance working; 0.05-0.1 is usual); a concept's own caption_dropout overrides it",
        min=0.0,
        max=1.0,
        label="Caption dropout",
    )


@dataclass
class TrainingConfig:
    max_steps: int = setting(1000, help="Optimizer steps to train", min=1, label="Steps")
    batch_size: int = setting(
        1, help="Clips per batch (a batch holds one resolution/frame bucket)", min=1, label="Batch size"
    )
    gradient_accumulation_steps: int = setting(
        1, help="Batches per optimizer step", min=1, label="Gradient accumulation", unit="batches"
    )
    learning_rate: float = setting(1e-4, help="Peak learning rate", min=0.0, label="Learning rate")
    optimizer: str = setting(
        "adamw",
        help="Optimizer (docs/optimizers.md); the *_8bit and paged ones need bitsandbytes; each has its section below",
        choices=OPTIMIZERS,
        label="Optimizer",
    )
    weight_decay: float = setting(0.01, help="Decoupled weight decay (every optimizer)", min=0.0, label="Weight decay")
    adam_beta1: float = setting(0.9, help="AdamW beta1", min=0.0, max=1.0, label="AdamW beta1")
    adam_beta2: float = setting(0.999, help="AdamW beta2", min=0.0, max=1.0, label="AdamW beta2")
    adam_epsilon: float = setting(1e-8, help="AdamW epsilon", min=0.0, label="AdamW epsilon")
    lr_scheduler: str = setting(
        "constant",
        help="Learning-rate schedule after warmup (schedule_free_adamw: constant only)",
        choices=("constant", "linear", "cosine", "cosine_with_restarts", "polynomial"),
        label="Learning-rate schedule",
    )
    warmup_steps: int = setting(
        0,
        help="Linear warmup steps from 0 to the peak learning rate (every schedule)",
        min=0,
        label="Warmup",
        unit="steps",
    )
    lr_cycles: int = setting(
        1, help="cosine_with_restarts: cosine decays after warmup, each from the peak", min=1, label="Restarts (cosine)"
    )
    lr_power: float = setting(
        1.0, help="polynomial: exponent of the decay (1: linear)", min=0.0, label="Decay power (polynomial)"
    )
    lr_min_factor: float = setting(
        0.0,
        help="Share of the peak learning rate the decaying schedules end at",
        min=0.0,
        max=1.0,
        label="Final learning-rate share",
    )
    prodigy: ProdigyConfig = setting(
        default_factory=ProdigyConfig, help="Prodigy settings", applies={"training.optimizer": ("prodigy",)}
    )
    adafactor: AdafactorConfig = setting(
        default_factory=AdafactorConfig, help="Adafactor settings", applies={"training.optimizer": ("adafactor",)}
    )
    came: CameConfig = setting(
        default_factory=CameConfig, help="CAME settings", applies={"training.optimizer": ("came",)}
    )
    lion: LionConfig = setting(
        default_factory=LionConfig,
        help="Lion and lion_8bit settings",
        applies={"training.optimizer": ("lion", "lion_8bit")},
    )
    schedule_free: ScheduleFreeConfig = setting(
        default_factory=ScheduleFreeConfig,
        help="Schedule-free AdamW settings",
        applies={"training.optimizer": SCHEDULE_FREE},
    )
    max_grad_norm: float = setting(
        1.0, help="Gradient clipping norm; 0 disables clipping", min=0.0, label="Gradient clipping norm"
    )
    train_dtype: str = setting(
        "bfloat16",
        help="Compute dtype of the forward pass (autocast); adapters stay float32",
        choices=DTYPES,
        label="Compute dtype",
    )
    gradient_checkpointing: bool = setting(
        True, help="Recompute activations in the backward pass to save memory", label="Gradient checkpointing"
    )
    compile: str = setting(
        "none",
        help="torch.compile: 'blocks' compiles the repeated transformer block once and reuses it for every block "
        "(short compile, most of the gain); 'full' compiles the whole transformer; 'none' runs eagerly",
        choices=("none", "blocks", "full"),
        label="Compile (torch)",
    )
    seed: int = setting(42, help="Seed of noise, timesteps and data order", min=0, label="Seed")
    timestep_distribution: str = setting(
        "logit_normal",
        help="How training noise levels are drawn",
        choices=("uniform", "logit_normal", "sigmoid"),
        label="Timestep distribution",
    )
    logit_mean: float = setting(0.0, help="Mean of the logit-normal distribution", label="Logit-normal mean")
    logit_std: float = setting(
        1.0, help="Standard deviation of the logit-normal distribution", min=1e-3, label="Logit-normal std"
    )
    sigmoid_scale: float = setting(
        1.0, help="Scale of the sigmoid distribution (sigmoid(scale * N(0,1)))", min=1e-3, label="Sigmoid scale"
    )
    flow_shift: float = setting(
        5.0, help="Discrete flow shift applied to drawn noise levels (1 = none)", min=0.01, label="Flow shift"
    )
    image_to_video_ratio: float = setting(
        0.0,
        help="TI2V-5B: share of batches trained as image-to-video (first latent frame clean, left out of the loss)",
        min=0.0,
        max=1.0,
        label="Image-to-video share (TI2V-5B)",
    )
    device: str = setting(
        "auto", help="'auto' (CUDA/ROCm if present, else CPU), 'cpu', 'cuda' or 'cuda:N'", label="Device"
    )


@dataclass
class OutputConfig:
    workspace_dir: str = setting(
        "workspace/run",
        help="Folder for the cache, TensorBoard logs, samples and saves",
        path="folder",
        label="Workspace folder",
    )
    output_path: str = setting(
        "",
        path="save_file",
        file_types=(("LoRA", "*.safetensors"), ("All files", "*")),
        help="Final output file (default: <workspace>/output/<training_method>.safetensors); A14B LoRAs are written "
        "as <name>_high_noise / <name>_low_noise beside it (full saves too)",
        label="Output file",
    )
    lora_format: str = setting(
        "comfyui",
        help="Key layout of saved LoRAs: comfyui (also read by diffusers), diffusers, or kohya (musubi-tuner's "
        "lora_unet_ names, also read by ComfyUI and diffusers); see docs/lora_format.md",
        choices=("comfyui", "diffusers", "kohya"),
        label="LoRA key layout",
    )
    save_dtype: str = setting("bfloat16", help="Dtype of saved weights", choices=DTYPES, label="Save dtype")
    save_every_steps: int = setting(
        0,
        help="Also save every N steps into <workspace>/save (0: only at the end)",
        min=0,
        label="Save every",
        unit="steps",
    )
    tensorboard: bool = setting(
        True, help="Log loss and learning rate to <workspace>/tensorboard", label="TensorBoard logging"
    )


@dataclass
class BackupConfig:
    """Backups hold everything needed to continue a run exactly; see docs/backups_and_resume.md."""

    every_steps: int = setting(
        0,
        help="Write a backup to <workspace>/backups every N optimizer steps (0: off)",
        min=0,
        label="Backup every",
        unit="steps",
    )
    every_minutes: float = setting(
        0.0,
        help="Write a backup when this many minutes have passed since the last one (0: off)",
        min=0.0,
        label="Backup every",
        unit="minutes",
    )
    rolling_count: int = setting(
        3,
        help="Keep only the newest N complete backups this run wrote (never deletes those of other runs)",
        min=1,
        label="Backups kept",
    )
    before_save: bool = setting(
        False, help="Also write a backup before each save of the model", label="Backup before each save"
    )
    continue_last_backup: bool = setting(
        False,
        help="Resume from the newest complete backup in <workspace>/backups (start fresh when there is none)",
        label="Resume from the latest backup",
    )


@dataclass
class EmaConfig:
    """An exponential moving average of the trained weights; see docs/backups_and_resume.md."""

    enabled: bool = setting(
        False, help="Keep an EMA of the trained weights and use it for samples and saves", label="EMA"
    )
    decay: float = setting(
        0.999,
        help="EMA decay: ema = decay * ema + (1 - decay) * weights at each update",
        min=0.0,
        max=1.0,
        label="EMA decay",
    )
    update_interval: int = setting(
        1, help="Update the EMA every N optimizer steps", min=1, label="EMA update every", unit="steps"
    )
    device: str = setting(
        "cpu",
        help="Where the EMA copy lives: CPU memory, or the training device (faster, uses accelerator memory)",
        choices=("cpu", "train_device"),
        label="EMA device",
    )


@dataclass
class TrainConfig:
    version: int = setting(
        1, help="Config format version (older files are migrated on load)", min=0, hidden=True, label="Config version"
    )
    model_type: str = setting("wan_2_2", help="Model family", choices=("wan_2_2",), label="Model family")
    training_method: str = setting(
        "lora",
        help="What is trained: a LoRA, the full transformer, or a text embedding",
        choices=("lora", "full", "embedding"),
        label="Training method",
    )
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(base_path=""), metadata={"label": "Model", "help": "The base model"}
    )
    lora: LoraConfig = field(default_factory=LoraConfig, metadata={"label": "LoRA", "help": "LoRA settings"})
    finetune: FineTuneConfig = field(
        default_factory=FineTuneConfig, metadata={"label": "Full fine-tuning", "help": "Full fine-tuning settings"}
    )
    embedding: EmbeddingConfig = field(
        default_factory=EmbeddingConfig,
        metadata={"label": "Embedding", "help": "Embedding (textual inversion) settings"},
    )
    experts: ExpertsConfig = field(
        default_factory=ExpertsConfig,
        # TI2V-5B has one transformer: the expert settings apply to the A14B variants (and 'auto', not yet known).
        metadata={
            "label": "A14B experts",
            "help": "Expert choice of A14B models",
            "applies": {"model.variant": ("auto", "T2V-A14B", "I2V-A14B")},
        },
    )
    data: DataConfig = field(
        default_factory=DataConfig, metadata={"label": "Data", "help": "Training data and caching"}
    )
    training: TrainingConfig = field(
        default_factory=TrainingConfig, metadata={"label": "Training", "help": "Optimisation"}
    )
    output: OutputConfig = field(default_factory=OutputConfig, metadata={"label": "Output", "help": "Where results go"})
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"label": "Sampling", "help": "Samples"})
    backup: BackupConfig = field(
        default_factory=BackupConfig, metadata={"label": "Backups", "help": "Backups and resuming"}
    )
    ema: EmaConfig = field(
        default_factory=EmaConfig,
        metadata={"label": "EMA", "help": "Exponential moving average of the trained weights"},
    )
    memory: MemoryConfig = field(
        default_factory=MemoryConfig, metadata={"label": "GPU memory", "help": "GPU memory: swapping, offloading"}
    )
