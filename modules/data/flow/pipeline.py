"""A small MGDS-style pipeline: stages that declare which item fields they read and write.

Items are dicts. Each stage takes the whole list and returns a new one, so a stage can drop items
(a broken video), expand them (one clip -> several windows) or batch work across them (encoding many
captions at once). Declaring reads/writes lets the pipeline check, before any work is done, that every
field a stage needs is produced by an earlier stage: a wrongly ordered pipeline fails at construction
with a message naming the stage and the field, not halfway through a cache build.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class PipelineError(RuntimeError):
    """The stages do not fit together (a field is read before any stage writes it): a bug in the code that builds
    the pipeline, not a user error, so it keeps its traceback."""


class PipelineStage(ABC):
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def process(self, items: list[dict]) -> list[dict]:
        """Return the items that go on, each with this stage's `writes` fields set."""


class Pipeline:
    def __init__(self, stages: list[PipelineStage], inputs: tuple[str, ...]):
        available = set(inputs)
        for stage in stages:
            missing = [field for field in stage.reads if field not in available]
            if missing:
                raise PipelineError(
                    f"{stage.name} reads {', '.join(missing)}, which no earlier stage writes "
                    f"(available: {', '.join(sorted(available))}). Fix: reorder the stages or add one that writes it."
                )
            available.update(stage.writes)
        self.stages = stages
        self.inputs = inputs

    def run(self, items: list[dict]) -> list[dict]:
        for item in items:
            absent = [field for field in self.inputs if field not in item]
            if absent:
                raise PipelineError(f"pipeline input item lacks {', '.join(absent)}")
        for stage in self.stages:
            items = stage.process(items)
            for item in items:
                absent = [field for field in stage.writes if field not in item]
                if absent:
                    raise PipelineError(f"{stage.name} did not write {', '.join(absent)} (a bug in that stage)")
        return items
