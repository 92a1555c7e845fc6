"""The training and evaluation loops. Both return dicts of averaged (global) metrics.

No host sync per step: losses and accuracy counts are summed on the device and read at
print intervals; the FPS window syncs the device only at its edges (metrics.Throughput).
"""

import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

from .amp import AmpSettings, autocast
from .errors import DataError
from .guard import NonFiniteLoss
from .metrics import Meter, Throughput, accuracy_counts, sum_over_ranks, warmup_steps
from .report import Reporter
from .transforms import Normalize

__all__ = ["TrainParts", "EpochPlan", "train_one_epoch", "train_step", "evaluate", "compute_loss"]


@dataclass
class TrainParts:
    """What one optimisation step needs."""

    model: nn.Module  # possibly DDP-wrapped
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: Optional[torch.amp.GradScaler]
    device: torch.device
    amp: AmpSettings
    normalize: Normalize
    aux_weight: float = 0.3  # GoogLeNet: loss = ce(main) + 0.3 * (ce(aux1) + ce(aux2))
    # Check every loss on the host before the update (free on CPU; one sync per step elsewhere,
    # so accelerators check the averaged loss at print intervals instead).
    check_finite: bool = False
    nan_skips: int = 0  # non-finite steps to skip before stopping (--nan-policy skip:N)


@dataclass
class EpochPlan:
    """Where this pass starts and when it may stop."""

    epoch: int
    steps_per_epoch: int  # full epoch, for the [step/steps] counter
    start_step: int = 0  # > 0 when resuming mid-epoch
    max_steps: Optional[int] = None  # --stop-step-num: stop after this many steps of this pass
    epochs_left: int = 0  # after this one, for the run ETA
    print_freq: int = 10
    world_size: int = 1
    max_bad_fraction: float = 0.01  # --max-bad-images


def compute_loss(criterion: nn.Module, output, target: torch.Tensor, aux_weight: float):
    """(main logits, loss). torchvision's GoogLeNet returns (logits, aux2, aux1) in training."""
    if isinstance(output, tuple):
        main, *aux = output
        aux_loss = sum(criterion(a, target) for a in aux if a is not None)
        return main, criterion(main, target) + aux_weight * aux_loss
    return output, criterion(output, target)


def train_one_epoch(parts: TrainParts, loader, plan: EpochPlan, reporter: Reporter,
                    after_step: Optional[Callable[[int], bool]] = None) -> Dict[str, float]:
    """One pass over ``loader``. ``after_step(step)`` may return True to stop early (signals,
    mid-epoch checkpoints). Returns train loss/acc1/acc5 over all ranks, fps, images, bad_images."""
    parts.model.train()
    meter = Meter(["loss", "acc1", "acc5"], parts.device)
    steps = len(loader) if plan.max_steps is None else min(len(loader), plan.max_steps)
    speed = Throughput(parts.device, warmup_steps(steps))
    bad = done = skipped = seen = 0
    stopped = False
    window_time = window_data = 0.0
    window_steps = 0
    start = last = time.perf_counter()
    speed.begin()
    for i, (images, target, n_bad) in enumerate(loader):
        bad += n_bad
        if images is None:  # every image of the batch was unreadable
            continue
        data_time = time.perf_counter() - last
        n = images.shape[0]
        seen += n
        step = plan.start_step + i
        if not train_step(parts, images, target, meter, n):
            skipped += 1
            if skipped > parts.nan_skips:
                raise NonFiniteLoss(f"non-finite loss at epoch {plan.epoch} step {step} "
                                    f"({skipped} such step{'s' * (skipped > 1)})", step)
            reporter.line(f"warning: non-finite loss at epoch {plan.epoch} step {step}; step skipped "
                          f"({skipped}/{parts.nan_skips})")
        done += 1
        speed.step(n)
        now = time.perf_counter()
        window_time, window_data, window_steps = window_time + now - last, window_data + data_time, window_steps + 1
        last = now
        if i % plan.print_freq == 0 or done == steps:
            _check_bad(bad, seen, plan.max_bad_fraction)
            m = meter.read_window()
            if not parts.check_finite and parts.scaler is None and sum_over_ranks(
                    float(m["loss"] != m["loss"]), parts.device):
                raise NonFiniteLoss(f"non-finite loss in epoch {plan.epoch} before step {step + 1}", None)
            avg = meter.averages()
            step_time = window_time / window_steps
            m.update(time=step_time, data=window_data / window_steps)
            avg["time"] = (now - start) / done
            left = steps - done
            reporter.step(plan.epoch, step, plan.steps_per_epoch, m, avg,
                          parts.optimizer.param_groups[0]["lr"], n * plan.world_size / step_time,
                          avg["time"] * left, avg["time"] * (left + plan.epochs_left * plan.steps_per_epoch))
            window_time = window_data = 0.0
            window_steps = 0
        if after_step is not None and after_step(step + 1):
            stopped = True
            break
        if done >= steps:
            stopped = plan.max_steps is not None and done == plan.max_steps
            break
    fps = speed.fps()
    _check_bad(bad, seen, plan.max_bad_fraction, final=True)
    out = meter.averages(reduce=True)
    out.update(fps=fps, images=out.pop("count"), bad_images=sum_over_ranks(bad, parts.device), steps=done,
               stopped=stopped,
               time_s=time.perf_counter() - start)
    return out


def _check_bad(bad: int, seen: int, max_fraction: float, final: bool = False) -> None:
    """Abort when more than ``max_fraction`` of the images read so far were unreadable."""
    total = bad + seen
    if bad and (final or total >= 64) and bad > max_fraction * total:
        raise DataError(f"{bad} of {total} images read were unreadable (more than --max-bad-images "
                        f"{max_fraction:g}); fix or remove the bad files, or raise --max-bad-images")


def train_step(parts: TrainParts, images, target, meter: Optional[Meter] = None, n: int = 0) -> bool:
    """One optimisation step on a uint8 (or float) batch; adds loss/accuracy sums to ``meter``.
    Returns False (and changes nothing) when ``parts.check_finite`` and the loss is not finite."""
    images = images.to(parts.device, non_blocking=True)
    target = target.to(parts.device, non_blocking=True)
    with autocast(parts.device, parts.amp):
        output = parts.model(parts.normalize(images))
        main, loss = compute_loss(parts.criterion, output, target, parts.aux_weight)
    # All ranks agree (one tiny all-reduce, CPU only), so they skip or stop at the same step.
    if parts.check_finite and sum_over_ranks(0.0 if torch.isfinite(loss).item() else 1.0, parts.device):
        return False
    parts.optimizer.zero_grad(set_to_none=True)
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        loss.backward()
        parts.optimizer.step()
    parts.scheduler.step()
    if meter is None:
        return True
    correct = accuracy_counts(main.detach(), target)
    meter.update(torch.cat([(loss.detach().float() * n).view(1), correct * (100.0)]), n)
    return True


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp: AmpSettings, normalize: Normalize,
             criterion: nn.Module) -> Dict[str, float]:
    """Exact over ranks: each rank sees a disjoint shard (EvalSampler); sums are all-reduced.
    ``model`` must be the bare module (DDP's forward would be a collective per batch)."""
    model.eval()
    meter = Meter(["loss", "acc1", "acc5"], device)
    bad = 0
    for images, target, n_bad in loader:
        bad += n_bad
        if images is None:
            continue
        images = images.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        with autocast(device, amp):
            output = model(normalize(images))
            loss = criterion(output, target)
        n = images.shape[0]
        meter.update(torch.cat([(loss.float() * n).view(1), accuracy_counts(output, target) * 100.0]), n)
    out = meter.averages(reduce=True)
    out["images"] = out.pop("count")
    out["bad_images"] = sum_over_ranks(bad, device)
    return out
