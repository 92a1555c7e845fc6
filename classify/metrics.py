"""Metric accumulation without per-step host syncs, and the step log line.

Sums stay on the device; they are read (one sync) only at print intervals and at the end
of an epoch. ``reduce()`` sums them over ranks for exact global figures.
"""

import datetime
import time
from typing import Dict, Optional, Sequence

import torch
import torch.distributed as dist

from .devices import collective_device, dist_ready, synchronize
from .distributed import all_reduce_sum

__all__ = ["accuracy_counts", "Meter", "format_eta", "Throughput", "warmup_steps", "counts_over_ranks",
           "sum_over_ranks"]


@torch.no_grad()
def accuracy_counts(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1, 5)) -> torch.Tensor:
    """Number of correct predictions at each k (a device tensor, no sync)."""
    maxk = min(max(topk), output.shape[1])
    pred = output.topk(maxk, dim=1).indices  # N x maxk
    correct = pred.eq(target.view(-1, 1))
    return torch.stack([correct[:, : min(k, maxk)].any(dim=1).sum() for k in topk]).float()


class Meter:
    """Running sums of named quantities weighted by sample count.

    The sums stay on the device and the sample counts on the host (the loop knows them), so
    ``update`` queues device work only: no host-to-device copy, no stream sync per step."""

    def __init__(self, names: Sequence[str], device: torch.device):
        self.names = list(names)
        dtype = torch.float64 if device.type in ("cpu", "cuda") else torch.float32  # npu: no fp64 sums
        self.total = torch.zeros(len(names), dtype=dtype, device=device)
        self.window = torch.zeros_like(self.total)
        self.total_count = self.window_count = 0

    def update(self, values: torch.Tensor, count: int) -> None:
        """``values``: per-name sums over the batch (device tensor); ``count``: its samples."""
        values = values.detach().to(self.total.dtype).flatten()
        self.total += values
        self.window += values
        self.total_count += count
        self.window_count += count

    def read_window(self) -> Dict[str, float]:
        """This rank's averages since the last call (one host sync), then reset the window."""
        out = self._averages(self.window.tolist(), self.window_count)
        self.window.zero_()
        self.window_count = 0
        return out

    def averages(self, reduce: bool = False) -> Dict[str, float]:
        """Averages of the running sums; ``reduce``: over all ranks (a collective)."""
        if not reduce or not dist_ready():
            return self._averages(self.total.tolist(), self.total_count)
        count = torch.tensor([float(self.total_count)], dtype=self.total.dtype, device=self.total.device)
        sums = all_reduce_sum(torch.cat([self.total, count])).tolist()
        return self._averages(sums[:-1], sums[-1])

    def _averages(self, sums, count) -> Dict[str, float]:
        out = {n: (s / count if count else float("nan")) for n, s in zip(self.names, sums)}
        out["count"] = count
        return out


def sum_over_ranks(value: float, device: torch.device) -> float:
    """A host number summed over ranks (a collective when distributed)."""
    if not dist_ready():
        return value
    on = collective_device(device)
    return all_reduce_sum(torch.tensor([float(value)], dtype=torch.float64, device=on)).item()


def counts_over_ranks(counts: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A tensor of counts summed over ranks (one collective when distributed)."""
    if not dist_ready():
        return counts
    return all_reduce_sum(counts.to(collective_device(device)))


def format_eta(seconds: Optional[float]) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    return str(datetime.timedelta(seconds=int(seconds)))


class Throughput:
    """Steady-state images/second over all ranks: warm-up steps excluded, the device
    synchronised only at the window's edges, images summed over ranks / the slowest
    rank's window time. Never one rank's figure times the world size."""

    def __init__(self, device: torch.device, warmup_steps: int):
        self.device, self.warmup_steps = device, warmup_steps
        self.steps = self.images = 0
        self.start = None

    def begin(self) -> None:
        """Before the first step (the window starts here when there is no warm-up)."""
        if self.warmup_steps == 0:
            self.start = time.perf_counter()

    def step(self, images: int) -> None:
        self.steps += 1
        if self.steps == self.warmup_steps:
            synchronize(self.device)
            self.start, self.images = time.perf_counter(), 0
        elif self.start is not None:
            self.images += images

    def fps(self) -> float:
        """Close the window (one sync) and return the global img/s; a collective over ranks."""
        synchronize(self.device)
        elapsed = time.perf_counter() - self.start if self.start is not None else 0.0
        images = torch.tensor([float(self.images)], dtype=torch.float64)
        seconds = torch.tensor([elapsed], dtype=torch.float64)
        if dist_ready():
            on = collective_device(self.device)
            images, seconds = images.to(on), seconds.to(on)
            dist.all_reduce(images, op=dist.ReduceOp.SUM)
            dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        images, seconds = images.item(), seconds.item()
        return images / seconds if seconds > 0 else 0.0


def warmup_steps(steps_per_epoch: int) -> int:
    """Steps excluded from the FPS window: up to 10, a fifth of a short epoch, 0 for one step."""
    return 0 if steps_per_epoch <= 1 else max(1, min(10, steps_per_epoch // 5))
