"""Metric accumulation without per-step host syncs, and the step log line.

Sums stay on the device; they are read (one sync) only at print intervals and at the end
of an epoch. ``reduce()`` sums them over ranks for exact global figures.
"""

import datetime
import time
from typing import Dict, Optional, Sequence

import torch
import torch.distributed as dist

from .devices import synchronize
from .distributed import all_reduce_sum

__all__ = ["accuracy_counts", "Meter", "format_eta", "Throughput", "warmup_steps",
           "sum_over_ranks"]


@torch.no_grad()
def accuracy_counts(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1, 5)) -> torch.Tensor:
    """Number of correct predictions at each k (a device tensor, no sync)."""
    maxk = min(max(topk), output.shape[1])
    pred = output.topk(maxk, dim=1).indices  # N x maxk
    correct = pred.eq(target.view(-1, 1))
    return torch.stack([correct[:, : min(k, maxk)].any(dim=1).sum() for k in topk]).float()


class Meter:
    """Running sums of named quantities weighted by sample count, kept on the device."""

    def __init__(self, names: Sequence[str], device: torch.device):
        self.names = list(names)
        dtype = torch.float64 if device.type in ("cpu", "cuda") else torch.float32  # npu: no fp64 sums
        self.total = torch.zeros(len(names) + 1, dtype=dtype, device=device)  # last: count
        self.window = torch.zeros_like(self.total)

    def update(self, values: torch.Tensor, count: int) -> None:
        """``values``: per-name sums over the batch (device tensor)."""
        row = torch.cat([values.detach().to(self.total.dtype).flatten(),
                         torch.tensor([count], dtype=self.total.dtype, device=self.total.device)])
        self.total += row
        self.window += row

    def read_window(self) -> Dict[str, float]:
        """Averages since the last call (one host sync), then reset the window."""
        out = self._averages(self.window.tolist())
        self.window.zero_()
        return out

    def averages(self, reduce: bool = False) -> Dict[str, float]:
        total = all_reduce_sum(self.total.clone()) if reduce else self.total
        return self._averages(total.tolist())

    def count(self, reduce: bool = False) -> int:
        return int(self.averages(reduce)["count"])

    def _averages(self, sums) -> Dict[str, float]:
        count = sums[-1]
        out = {n: (s / count if count else float("nan")) for n, s in zip(self.names, sums)}
        out["count"] = count
        return out


def sum_over_ranks(value: float, device: torch.device) -> float:
    """A host number summed over ranks (a collective when distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    on = device if dist.get_backend() != "gloo" else torch.device("cpu")
    return all_reduce_sum(torch.tensor([float(value)], dtype=torch.float64, device=on)).item()


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
        if dist.is_available() and dist.is_initialized():
            on = self.device if dist.get_backend() != "gloo" else torch.device("cpu")
            images, seconds = images.to(on), seconds.to(on)
            dist.all_reduce(images, op=dist.ReduceOp.SUM)
            dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        images, seconds = images.item(), seconds.item()
        return images / seconds if seconds > 0 else 0.0


def warmup_steps(steps_per_epoch: int) -> int:
    """Steps excluded from the FPS window: up to 10, a fifth of a short epoch, 0 for one step."""
    return 0 if steps_per_epoch <= 1 else max(1, min(10, steps_per_epoch // 5))
