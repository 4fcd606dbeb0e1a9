"""Corrections, unused and skipped files per concept and per file: the dataset check's function, and a run's
diagnostics.json and event stream."""

import json
from types import SimpleNamespace

from PIL import Image

from modules.data.flow.report import DataReport
from modules.data.flow.stages import CollectMedia, ProbeMedia
from modules.data.media.corrections import dataset_corrections
from modules.data.sources.concepts import Concept
from modules.trainer.reporting import run_events
from modules.trainer.reporting.run_start import REPORT_FILE, record_data_report
from tests.media_fixtures import pattern, with_display_matrix, write_pattern_video


def make_concepts(root):
    phone, photos = root / "phone", root / "photos"
    phone.mkdir()
    photos.mkdir()
    base = write_pattern_video(root / "base.mp4", count=12, width=64, height=48)
    with_display_matrix(base, phone / "selfie.mp4", 90, hflip=True)
    write_pattern_video(phone / "plain.mp4", count=12, width=64, height=48)
    (phone / "shot_list.md").write_text("takes 1-3\n")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pattern(0)).save(photos / "portrait.jpg", exif=exif.tobytes())
    (photos / "broken.mp4").write_text("not a video")
    (photos / "orphan.txt").write_text("a caption of nothing")
    for path in [phone / "selfie.mp4", phone / "plain.mp4", photos / "portrait.jpg", photos / "broken.mp4"]:
        path.with_suffix(".txt").write_text("a caption")
    return phone, photos


def test_dataset_corrections_lists_per_concept_and_file_what_was_done(tmp_path):
    phone, photos = make_concepts(tmp_path)
    record = dataset_corrections([Concept(phone), Concept(photos)])
    json.dumps(record)  # plain data
    by_path = {c["path"]: c for c in record["concepts"]}
    assert list(by_path) == [str(phone), str(photos)]
    assert by_path[str(phone)]["files"] == [
        {
            "path": str(phone / "selfie.mp4"),
            "corrections": [
                "rotated 270 and mirrored (display matrix: mirrored left-right, then turned 270 counter-clockwise)"
            ],
        }
    ]
    assert by_path[str(phone)]["unused"] == [
        {
            "path": str(phone / "shot_list.md"),
            "reason": "not an image or video: neither Pillow nor FFmpeg reads its content",
        }
    ]
    assert by_path[str(phone)]["skipped"] == []
    photo = by_path[str(photos)]
    assert photo["files"] == [
        {"path": str(photos / "portrait.jpg"), "corrections": ["EXIF orientation 6: turned as shown"]}
    ]
    assert [u["path"] for u in photo["unused"]] == [str(photos / "orphan.txt")]
    assert [(s["path"], s["category"]) for s in photo["skipped"]] == [(str(photos / "broken.mp4"), "unreadable media")]
    assert record["other"] == {"files": [], "unused": [], "skipped": []}


def test_a_run_writes_the_record_into_diagnostics_json_and_the_event_stream(tmp_path, monkeypatch):
    phone, photos = make_concepts(tmp_path)
    report = DataReport()
    CollectMedia(report).process([{"concept": Concept(phone)}, {"concept": Concept(photos)}])
    ProbeMedia(report).process([{"path": p} for c in report.concepts.values() for p in c])
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / REPORT_FILE).write_text(json.dumps({"schema_version": 1, "gpu_summary": "none"}))
    events = workspace / "events.jsonl"
    monkeypatch.setattr(run_events, "_sink", events.open("a", encoding="utf-8"))
    record_data_report(SimpleNamespace(data=SimpleNamespace(report=report), workspace=workspace))
    run_events._sink.close()
    diagnostics = json.loads((workspace / REPORT_FILE).read_text())
    assert diagnostics["gpu_summary"] == "none"  # the run report is kept
    assert diagnostics["data"] == report.record() == dataset_corrections([Concept(phone), Concept(photos)])
    [event], _ = run_events.read_events(events)
    assert event["event"] == "data" and event["concepts"] == diagnostics["data"]["concepts"]
