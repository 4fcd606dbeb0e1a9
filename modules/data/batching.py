"""Bucketed batches: every batch holds samples of one (frames, height, width) bucket, in a seeded order.

The order depends only on (seed, epoch), so a resumed run sees the same batches as an uninterrupted one,
and on rank/world size so that several processes split an epoch without overlap.
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
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.buckets), generator=generator).tolist()
        by_bucket: dict[object, list[int]] = defaultdict(list)
        for index in order:
            by_bucket[self.buckets[index]].append(index)
        # A bucket smaller than the batch size still trains (as a smaller batch) rather than being dropped.
        batches = [
            indices[i : i + self.batch_size]
            for indices in by_bucket.values()
            for i in range(0, len(indices), self.batch_size)
        ]
        batch_order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in batch_order][self.rank :: self.world_size]

    def num_batches(self) -> int:
        return len(self.batches(0))
