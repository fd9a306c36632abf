"""The data order of detector training: batches that depend only on (seed, epoch), split over ranks and
startable mid-epoch, which is what makes a resumed run see exactly the batches an uninterrupted one would."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.distributed as dist


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1



class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of indices whose order depends only on (seed, epoch), split over ranks, startable mid-epoch.

    Like DistributedSampler: the permutation is padded by repetition to a multiple of the world size and
    rank r takes every world-th index, so every rank sees the same number of batches. ``drop_last`` drops a
    final partial batch unless that would leave none. ``keyed`` yields ``(epoch, index)`` pairs so a dataset
    can draw per-epoch augmentation deterministically (also inside worker processes).
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, shuffle: bool = True, drop_last: bool = True,
                 rank: int | None = None, world_size: int | None = None, keyed: bool = False):
        if n < 1 or batch_size < 1:
            raise ValueError(f"EpochBatchSampler needs n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        default_rank, default_world = dist_info()
        self.n, self.batch_size, self.seed, self.shuffle, self.drop_last = n, batch_size, seed, shuffle, drop_last
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.keyed = keyed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start_batch(self, start: int) -> None:
        self.start = int(start)

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        per_rank = math.ceil(self.n / self.world_size)
        order += order[: per_rank * self.world_size - self.n] if per_rank * self.world_size > self.n else []
        while len(order) < per_rank * self.world_size:  # more ranks than items
            order += order[: per_rank * self.world_size - len(order)]
        return order[self.rank::self.world_size]

    def _num_batches(self, count: int) -> int:
        full = count // self.batch_size
        return full if (self.drop_last and full) else math.ceil(count / self.batch_size)

    def __len__(self) -> int:
        return self._num_batches(math.ceil(self.n / self.world_size))

    def __iter__(self) -> Iterator[list]:
        indices = self._indices()
        for b in range(self.start, self._num_batches(len(indices))):
            chunk = indices[b * self.batch_size:(b + 1) * self.batch_size]
            yield [(self.epoch, i) for i in chunk] if self.keyed else chunk
