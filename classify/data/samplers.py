"""Samplers: a resumable sharded training sampler and an exact evaluation sampler.

The training sampler yields ``(index, sample_seed)`` pairs. ``SeededDataset`` seeds the
augmentation RNG from ``sample_seed``, so a sample's augmentation depends only on
(seed, epoch, position) -- not on worker count or on where a run was interrupted. That
is what makes a resumed run bit-identical to an uninterrupted one.
"""

import math
from typing import Iterator, Tuple

import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

__all__ = ["TrainSampler", "RepeatedAugSampler", "EvalSampler", "SeededDataset", "seeded_call"]


class TrainSampler(Sampler):
    """Shuffled, sharded over ``world_size`` ranks (padded like DistributedSampler), resumable.

    ``set_epoch(e)`` reshuffles; ``skip(n)`` drops the first n samples of this rank's
    shard (mid-epoch resume) until the next ``set_epoch``.
    """

    def __init__(self, size: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        self.size, self.rank, self.world_size = size, rank, world_size
        self.seed = seed
        self.epoch, self.start = 0, 0
        self.per_rank = math.ceil(size / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start = epoch, 0

    def skip(self, n: int) -> None:
        self.start = min(max(n, 0), self.per_rank)

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.size, generator=g)
        total = self.per_rank * self.world_size
        if total > self.size:  # pad with the first indices so every rank gets the same count
            order = torch.cat([order, order[: total - self.size]])
        positions = range(self.rank + self.start * self.world_size, total, self.world_size)
        base = (self.seed * 1000003 + self.epoch) * (total + 1)
        for pos in positions:
            yield int(order[pos]), (base + pos) % 2**63


class RepeatedAugSampler(TrainSampler):
    """Repeated augmentation (``--ra-sampler --ra-reps R``; Hoffer et al., 2020, as DeiT trains):
    torchvision's ``RASampler`` / timm's ``RepeatAugSampler`` order, each image of the shuffled
    order ``R`` times in a row, dealt round-robin over the ranks, so that its copies land on
    different ranks with different augmentations (each copy has its own position, hence its own
    sample seed). An epoch keeps the length it has without RA (ceil(size / world) samples per
    rank, the same on every rank): about size / R distinct images, R times each. ``skip`` and
    ``set_epoch`` are the parent's: a mid-epoch resume continues at the same position."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1, seed: int = 0, reps: int = 3):
        super().__init__(size, rank, world_size, seed)
        self.reps = reps

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.size, generator=g).repeat_interleave(self.reps)
        total = self.per_rank * self.world_size
        if total > len(order):  # fewer images x reps than ranks x steps: pad as the parent does
            order = torch.cat([order] * math.ceil(total / len(order)))
        base = (self.seed * 1000003 + self.epoch) * (total + 1)
        for pos in range(self.rank + self.start * self.world_size, total, self.world_size):
            yield int(order[pos]), (base + pos) % 2**63


class EvalSampler(Sampler):
    """Every index exactly once across ranks: rank r takes r, r+W, r+2W, ... (no padding)."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        self.size, self.rank, self.world_size = size, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self):
        return iter(range(self.rank, self.size, self.world_size))


class SeededDataset(Dataset):
    """Wraps a dataset; ``ds[(index, seed)]`` runs the transforms with torch's CPU generator
    seeded to ``seed`` (the transforms draw from it).

    Only the CPU generator: ``torch.manual_seed`` also seeds every accelerator backend and
    costs ~250 us per call, as much as decoding a small JPEG; this costs ~1 us.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        return seeded_call(seed, self.dataset.__getitem__, index)


def seeded_call(seed: int, fn, *args):
    """``fn(*args)`` with torch's CPU generator seeded to ``seed``; in the main process the
    training RNG's state is put back afterwards (a loader worker owns its RNG)."""
    generator = torch.default_generator
    if get_worker_info() is not None:
        generator.manual_seed(seed)
        return fn(*args)
    state = generator.get_state()
    try:
        generator.manual_seed(seed)
        return fn(*args)
    finally:
        generator.set_state(state)
