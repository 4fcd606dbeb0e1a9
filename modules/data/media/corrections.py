"""What the pipeline corrects to train on the frames a viewer sees, per concept and per file, as plain data.

`dataset_corrections` lists and probes the concepts' files exactly as training does (the same collect and
probe stages, nothing decoded beyond a first frame, no model) and returns DataReport.record(): per concept,
each corrected file with what was done ("rotated 90 and mirrored ...", "SAR 32:27 -> 853x480", ...), each
unused file and each skipped file with the reason. The dataset check and the window call it; a training run
writes the same record into diagnostics.json and its event stream (modules/trainer/reporting/run_start.py).
"""

from __future__ import annotations

from modules.data.flow.pipeline import Pipeline
from modules.data.flow.report import DataReport
from modules.data.flow.stages import CollectMedia, ProbeMedia
from modules.data.sources.concepts import Concept


def dataset_corrections(concepts: list[Concept], backend: str = "auto") -> dict:
    """DataReport.record() of collecting and probing `concepts` (a DataError for a concept folder that is missing)."""
    report = DataReport()
    Pipeline([CollectMedia(report), ProbeMedia(report, backend)], inputs=("concept",)).run(
        [{"concept": concept} for concept in concepts]
    )
    return report.record()
