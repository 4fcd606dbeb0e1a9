"""Bucketed batches: every batch holds samples of one (frames, height, width) bucket, in a seeded order.

The order depends only on (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
With several processes (world_size > 1) a step's batch holds batch_size * world_size samples of one bucket
and each process takes its consecutive part, so every process sees the same shapes on a step and the
processes together see exactly the batches one process with batch_size * world_size would. A bucket's last
batch with fewer samples than processes repeats its samples so that every process gets an equal part.
"""

from __future__ import annotations

from collections import defaultdict

import torch


class BucketBatchSampler:
    def __init__(self, buckets: list, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.buckets = list(buckets)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def batches(self, epoch: int) -> list[list[int]]:
        """This process's samples of each step of `epoch`."""
        return [self.share(batch)[0] for batch in self.step_batches(epoch)]

    def step_batches(self, epoch: int) -> list[list[int]]:
        """The whole batch of each step of `epoch` (all processes together)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.buckets), generator=generator).tolist()
        by_bucket: dict[object, list[int]] = defaultdict(list)
        for index in order:
            by_bucket[self.buckets[index]].append(index)
        # A bucket smaller than the batch size still trains (as a smaller batch) rather than being dropped.
        per_step = self.batch_size * self.world_size
        batches = [
            indices[i : i + per_step] for indices in by_bucket.values() for i in range(0, len(indices), per_step)
        ]
        batch_order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in batch_order]

    def share(self, step_batch: list[int]) -> tuple[list[int], int, int]:
        """(this process's samples, their start in the step's batch, the step's batch size after filling)."""
        if self.world_size == 1:
            return step_batch, 0, len(step_batch)
        total = -(-len(step_batch) // self.world_size) * self.world_size
        filled = [step_batch[i % len(step_batch)] for i in range(total)]
        part = total // self.world_size
        start = self.rank * part
        return filled[start : start + part], start, total

    def num_batches(self) -> int:
        return len(self.step_batches(0))
