"""When samples and validation happen: every N steps, every N epochs, every N minutes (with a settable clock)."""

from __future__ import annotations

from modules.config.sampling_config import SamplingConfig
from modules.trainer.samples.sample_schedule import SampleSchedule


def steps_with_samples(schedule: SampleSchedule, steps: range) -> list[int]:
    return [step for step in steps if schedule.samples_after_step(step)]


def test_every_steps_and_epochs():
    schedule = SampleSchedule(SamplingConfig(every_steps=3, every_epochs=2, validation_every_steps=4))
    assert steps_with_samples(schedule, range(1, 11)) == [3, 6, 9]
    assert [e for e in range(1, 7) if schedule.samples_after_epoch(e)] == [2, 4, 6]
    assert [s for s in range(1, 11) if schedule.validation_after_step(s)] == [4, 8]


def test_everything_off_by_default():
    schedule = SampleSchedule(SamplingConfig())
    assert steps_with_samples(schedule, range(1, 100)) == []
    assert not any(schedule.samples_after_epoch(e) for e in range(1, 10))
    assert not schedule.before_training and schedule.at_end


def test_every_minutes_counts_from_the_last_samples():
    now = [0.0]
    schedule = SampleSchedule(SamplingConfig(every_minutes=2.0), clock=lambda: now[0])
    now[0] = 119.0
    assert not schedule.samples_after_step(1)
    now[0] = 120.0
    assert schedule.samples_after_step(2)
    schedule.sampled()  # sampling took until t = 150 s: the next samples are due 2 minutes after that
    now[0] = 150.0
    schedule.sampled()
    now[0] = 269.0
    assert not schedule.samples_after_step(3)
    now[0] = 270.0
    assert schedule.samples_after_step(4)
