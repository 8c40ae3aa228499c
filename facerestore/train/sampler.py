"""A data order that can be saved and resumed exactly: one integer says where training is.

Epoch ``e`` visits ``randperm(n)`` drawn from ``seed + e``; with ``world`` processes each takes
every ``world``-th index of that permutation (what ``DistributedSampler`` does), and batches are
cut from the shard with ``drop_last``. The position is ``consumed`` (batches handed to the
trainer since step 0), so a resumed run re-creates the sampler with the saved count and sees the
same batches an uninterrupted run would, whatever the DataLoader prefetched before a kill.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class ResumableBatchSampler:
    """Endless seeded batch order, sharded across processes, restartable at any batch."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 consumed: int = 0):
        if n < 1:
            raise ValueError("empty dataset")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world = rank, world
        per_rank = n // world
        self.batches_per_epoch = per_rank // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(f"{n} images cannot make one batch of {batch_size} per process "
                             f"({world} process(es)); lower train.batch_size or add images")
        self.consumed = consumed

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        usable = (self.n // self.world) * self.world
        shard = perm[:usable][self.rank::self.world].tolist()
        bs = self.batch_size
        return [shard[i * bs:(i + 1) * bs] for i in range(self.batches_per_epoch)]

    def __iter__(self) -> Iterator[list[int]]:
        """Yields forever from ``consumed`` on (the trainer stops; the count is the trainer's)."""
        position = self.consumed
        while True:
            epoch, offset = divmod(position, self.batches_per_epoch)
            for batch in self.epoch_batches(epoch)[offset:]:
                position += 1
                yield batch
