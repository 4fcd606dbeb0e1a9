"""Dataset tools: from raw footage to a checked, captioned training set (`scripts/dataset.py`, docs/dataset_tools.md).

- `clip_plan.py`: which frame ranges become clips (shot boundaries, length bounds, gap from a cut); pure.
- `source_timing.py`: a source's keyframes, timeline offset and colour tags, as ffmpeg needs them to cut.
- `split.py`: shot detection (PySceneDetect) and cutting with the bundled ffmpeg, a JSON sidecar per clip.
- `caption_frames.py`: the frames a captioning model sees, taken as the trainer reads the clip.
- `caption_model.py`: loading a Qwen2.5-VL / Qwen3-VL checkpoint (class from its config, local files by default).
- `qwen_vl_patches.py`: frames -> the vision tower's patches and grid, from the checkpoint's processor settings.
- `qwen_vl_inputs.py`: a checkpoint's generate() inputs (chat template, pad tokens, timestamps) without torchvision.
- `caption.py`: the captioning run: batches, trigger word, skip/overwrite, atomic resumable writes.
- `check.py`: the data pipeline's own probe over concepts: what trains, what is skipped and why.
"""
