"""`scripts/dataset.py check`: the data pipeline's own stages, up to the buckets, over concepts, without a model.

It runs exactly the stages a training run runs before it encodes (collect -> probe -> plan windows -> bucket,
plus the mirrored windows of a flipped concept, modules/data/flow/video_dataset.py) with the run's settings, so it
lists what will train, what is skipped and why, the windows and buckets each file gives, the corrections
applied to reach the frames as shown, and caption statistics. Only decoding is left out: a file whose header
is fine but whose frames are broken is found by the cache build (stages.CacheLatents), not here.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from modules.data.clips.buckets import Bucket
from modules.data.flow.pipeline import Pipeline
from modules.data.flow.report import DataReport
from modules.data.flow.stages import AssignBuckets, CollectMedia, PlanWindows, ProbeMedia
from modules.data.sources.flip import AddFlippedWindows
from modules.dataset_tools.data_settings import LabelledConcept


def plan_items(plan: LabelledConcept, report: DataReport) -> list[dict]:
    """The pipeline items of one concept up to its buckets: one per window (and mirrored window)."""
    s = plan.settings
    stages = [
        CollectMedia(report),
        ProbeMedia(report, s.backend),
        PlanWindows(report, s.target_fps, s.window_frames, s.extraction_mode, s.max_windows, s.stride, s.min_frames),
        AssignBuckets(s.target_area, s.pixel_multiple),
        *([AddFlippedWindows()] if s.flip else []),
    ]
    return Pipeline(stages, inputs=("concept",)).run([{"concept": plan.concept}])


def check_concepts(plans: list[LabelledConcept]) -> dict:
    concepts = [_check_one(plan) for plan in plans]
    captions = [f["caption_words"] for c in concepts for f in c["files"]]
    skipped = [s for c in concepts for s in c["skipped"]]
    found = sum(c["caption_coverage"]["media_files"] for c in concepts)
    with_caption = sum(c["caption_coverage"]["with_caption"] for c in concepts)
    buckets = Counter()
    for concept in concepts:
        buckets.update(concept["buckets"])
    return {
        "concepts": concepts,
        "totals": {
            "files_trained": sum(len(c["files"]) for c in concepts),
            "files_skipped": len({s["path"] for s in skipped}),
            "windows": sum(c["windows"] for c in concepts),
            "samples_per_epoch": sum(c["samples_per_epoch"] for c in concepts),
            "skipped_by_reason": dict(Counter(s["category"] for s in skipped)),
            "caption_coverage": _coverage(found, with_caption),
            "caption_words": _stats(captions),
            "buckets": dict(sorted(buckets.items())),
            "files_corrected": sum(1 for c in concepts for f in c["files"] if f["corrections"]),
        },
    }


def _check_one(plan: LabelledConcept) -> dict:
    report = DataReport()
    items = plan_items(plan, report)
    files: dict[Path, dict] = {}
    for item in items:
        info, bucket = item["info"], item["bucket"]
        entry = files.setdefault(
            item["path"],
            {
                "path": str(item["path"]),
                "caption": item["caption"],
                "caption_words": len(item["caption"].split()),
                "caption_chars": len(item["caption"]),
                "shown_frames": info.frame_count,
                "fps": info.fps,
                "size": [info.width, info.height],
                "corrections": list(info.corrections),
                "repeats": item["repeats"],
                "windows": [],
            },
        )
        entry["windows"].append(
            {
                "source_indices": list(item["source_indices"]),
                "frames": item["frames"],
                "bucket": _bucket(bucket),
                "flip": bool(item.get("flip")),
            }
        )
    skipped = [{"path": str(s.path), "category": s.category, "reason": s.reason} for s in report.skipped]
    collected = len(files) + sum(
        1 for s in report.skipped if s.category not in ("missing caption", "unreadable caption")
    )
    uncaptioned = sum(1 for s in report.skipped if s.category in ("missing caption", "unreadable caption"))
    buckets = Counter(w["bucket"] for f in files.values() for w in f["windows"])
    s = plan.settings
    return {
        "concept": plan.label,
        "path": str(plan.concept.path),
        "settings": {
            "fps": s.target_fps,
            "frames": s.window_frames,
            "min_frames": s.min_frames,
            "extraction_mode": s.extraction_mode,
            "max_windows": s.max_windows,
            "resolution_area": s.target_area,
            "pixel_multiple": s.pixel_multiple,
            "flip": s.flip,
            "caption_source": plan.concept.caption_source,
            "on_missing_caption": plan.concept.on_missing_caption,
        },
        "files": list(files.values()),
        "skipped": skipped,
        "notes": list(report.notes),
        "windows": sum(len(f["windows"]) for f in files.values()),
        "samples_per_epoch": sum(len(f["windows"]) * f["repeats"] for f in files.values()),
        "buckets": dict(buckets),
        "caption_coverage": _coverage(collected + uncaptioned, collected),
    }


def _bucket(bucket: Bucket) -> str:
    return str(bucket)  # WIDTHxHEIGHTxFRAMES


def _coverage(found: int, with_caption: int) -> dict:
    return {"media_files": found, "with_caption": with_caption, "ratio": round(with_caption / found, 4) if found else 0}


def _stats(values: list[int]) -> dict:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 2),
        "max": max(values),
    }


def report_text(report: dict) -> str:
    lines = []
    for concept in report["concepts"]:
        s = concept["settings"]
        lines.append(
            f"{concept['concept']} ({concept['path']}): {s['frames']} frames at {s['fps']:g} fps, "
            f"mode {s['extraction_mode']}, area {s['resolution_area']} px, multiple {s['pixel_multiple']}"
        )
        for f in concept["files"]:
            windows = ", ".join(
                f"{w['bucket']}{' mirrored' if w['flip'] else ''} from frame {w['source_indices'][0]}"
                for w in f["windows"]
            )
            lines.append(f"  trains  {f['path']}: {len(f['windows'])} window(s): {windows}")
            for what in f["corrections"]:
                lines.append(f"          corrected: {what}")
        for skip in concept["skipped"]:
            lines.append(f"  SKIPPED {skip['path']}: {skip['category']}: {skip['reason']}")
        for note in concept["notes"]:
            lines.append(f"  note: {note}")
    t = report["totals"]
    cov, words = t["caption_coverage"], t["caption_words"]
    lines.append(
        f"total: {t['files_trained']} file(s) train as {t['windows']} window(s) "
        f"({t['samples_per_epoch']} samples an epoch with repeats); {t['files_skipped']} skipped"
        + (f" ({', '.join(f'{n} {k}' for k, n in t['skipped_by_reason'].items())})" if t["skipped_by_reason"] else "")
    )
    lines.append(f"captions: {cov['with_caption']} of {cov['media_files']} media files ({cov['ratio']:.0%})")
    if words.get("count"):
        lines.append(
            f"caption words: min {words['min']}, median {words['median']:g}, mean {words['mean']:g}, max {words['max']}"
        )
    lines.append("buckets (WxHxF: windows): " + ", ".join(f"{b}: {n}" for b, n in t["buckets"].items()))
    return "\n".join(lines)
