"""Learning-rate schedules, stepped every iteration (a LambdaLR over the whole run).

- ``cosine``: half-cosine from the base lr to 0 over the run (ModelZoo AlexNet/VGG16/IRv2).
- ``step``: x gamma every ``step`` epochs, or at ``milestones`` when given (pytorch/examples:
  x0.1 every 30 epochs; ModelZoo GoogLeNet).
- ``exponential``: x gamma at each milestone epoch (the MindSpore GoogLeNet seed's
  "exponential" decay: x0.3 at 70, 140, 210, 280).
- ``linear``: from the base lr straight down to 0 at the end of the run (after the warm-up):
  "Budgeted Training" (Li et al., ICLR 2020) finds a linear decay to zero at the budget's end the
  most robust schedule for any epoch count; FFCV's ResNet recipes ramp the same way.
- ``constant``.
- torchvision references' names, with their meaning (``references/classification/train.py``:
  a ``SequentialLR`` of the warm-up, then the main scheduler stepped once per EPOCH, counted from
  the warm-up's end): ``steplr`` = ``StepLR(step_size, gamma)``, ``cosineannealinglr`` =
  ``CosineAnnealingLR(T_max=epochs - warmup, eta_min=lr_min)``, ``exponentiallr`` =
  ``ExponentialLR(gamma)``: x gamma every epoch. Here they are stepped every iteration: the
  step-wise ones hold within an epoch, so every iteration has torchvision's lr of its epoch;
  the cosine moves within the epoch too and equals torchvision's at each epoch's start.
All with an optional warm-up over ``warmup_epochs``: linear from ~0 (the seeds'), or with
torchvision's ``--lr-warmup-method``/``--lr-warmup-decay``: ``linear`` from ``decay`` x lr up to
the lr (``LinearLR(start_factor=decay)``), ``constant`` at ``decay`` x lr (``ConstantLR``).
"""

import math
from typing import Optional, Sequence

import torch

__all__ = ["SCHEDULES", "TORCHVISION_SCHEDULES", "WARMUP_METHODS", "lr_factor", "build_scheduler", "progressive_size"]

TORCHVISION_SCHEDULES = ("steplr", "cosineannealinglr", "exponentiallr")
SCHEDULES = ("cosine", "step", "exponential", "constant", "linear", *TORCHVISION_SCHEDULES)
WARMUP_METHODS = ("linear", "constant")
WARMUP_DECAY = 0.01  # torchvision's --lr-warmup-decay default


def lr_factor(name: str, epoch_float: float, epochs: int, *, warmup_epochs: float = 0.0,
              milestones: Sequence[int] = (), step: int = 30, gamma: float = 0.1,
              warmup_method: str = "linear", warmup_decay: Optional[float] = None,
              min_factor: float = 0.0) -> float:
    """The multiplier of the base lr at a (fractional) epoch; ``min_factor``: the cosine
    schedules' floor (``--lr-min`` / lr)."""
    if warmup_epochs > 0 and epoch_float < warmup_epochs:
        if warmup_method == "constant":
            return WARMUP_DECAY if warmup_decay is None else warmup_decay
        if warmup_decay is not None:
            return warmup_decay + (1.0 - warmup_decay) * epoch_float / warmup_epochs
        return min(1.0, (epoch_float + 1e-3) / warmup_epochs)  # never exactly 0, never above 1
    if name in ("cosine", "cosineannealinglr", "linear"):
        span = max(epochs - warmup_epochs, 1e-8)
        progress = min(max(epoch_float - warmup_epochs, 0.0) / span, 1.0)
        if name == "linear":  # to 0 at the end of the run (the fast recipes, FFCV's)
            return 1.0 - progress
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name in ("steplr", "exponentiallr"):  # torchvision: whole epochs since the warm-up's end
        done = max(int(epoch_float) - math.ceil(warmup_epochs), 0)
        return gamma ** (done // max(step, 1) if name == "steplr" else done)
    epoch = int(epoch_float)
    if name == "step":
        passed = sum(epoch >= m for m in milestones) if milestones else epoch // max(step, 1)
        return gamma ** passed
    if name == "exponential":
        return gamma ** sum(epoch >= m for m in milestones)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, *, name: str, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float = 0.0, milestones: Sequence[int] = (), step: int = 30,
                    gamma: float = 0.1, warmup_method: str = "linear", warmup_decay: Optional[float] = None,
                    min_factor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    steps = max(steps_per_epoch, 1)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(name, it / steps, epochs, warmup_epochs=warmup_epochs,
                                        milestones=milestones, step=step, gamma=gamma,
                                        warmup_method=warmup_method, warmup_decay=warmup_decay,
                                        min_factor=min_factor))


def progressive_size(epoch: int, *, start: int, end: int, from_epoch: int, to_epoch: int) -> int:
    """``--progressive-resize``: FFCV's train resolution schedule (``get_resolution`` of its ResNet
    example): ``start`` up to ``from_epoch``, ``end`` from ``to_epoch`` on, in between the linear
    ramp rounded to a multiple of 32."""
    if epoch <= from_epoch:
        return start
    if epoch >= to_epoch:
        return end
    size = start + (end - start) * (epoch - from_epoch) / (to_epoch - from_epoch)
    return int(round(size / 32)) * 32
