"""Weight EMA (``--model-ema``), torchvision references' way: ``torch.optim.swa_utils.AveragedModel``
over the parameters and buffers, updated every ``--model-ema-steps`` optimizer steps with
``ema = decay * ema + (1 - decay) * weights``.

The decay is torchvision's, adjusted so that it does not depend on the batch, the update
interval and the number of epochs (from pycls; torchvision ``references/classification/train.py``):
``alpha = min(1, (1 - decay) * global_batch * steps / epochs)``, decay = 1 - alpha. During the lr
warm-up the EMA keeps copying the weights (torchvision resets it every step of the warm-up).

timm's ``--model-ema-warmup`` is a different thing: a warm-up of the decay itself (timm's
``ModelEmaV3``: ``decay_t = min(decay, 1 - (1 + t) ** -2/3)`` at the t-th update), so that the
first updates forget the random init quickly; here it counts EMA updates.

Buffers: as torchvision's ``ExponentialMovingAverage`` (``use_buffers=True``) and timm's
``ModelEmaV2/V3``, BatchNorm's running mean and variance are averaged like the weights; integer
buffers (``num_batches_tracked``) follow the model (timm V3's way: torch's EMA function would
truncate the blend of two counters into an integer).

An EMA that cannot move (``stuck_note``): with torchvision's defaults (0.99998 every 32 steps) a
run of a few hundred steps leaves the EMA at its initial weights; the run says so at start-up.

``AveragedModel`` reads its update counter on the host once per update (one sync every
``--model-ema-steps`` steps, as in torchvision), never per training step.
"""

from typing import List, Optional

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["ModelEma", "adjusted_decay", "stuck_note"]

STUCK = 0.9  # an EMA that keeps this much of its start at the run's end has not moved
TARGET = 0.01  # the suggested decay leaves this much of the start at the run's end

WARMUP_POWER = 2 / 3  # timm ModelEmaV3's defaults: warmup_gamma 1, warmup_power 2/3


def adjusted_decay(decay: float, *, global_batch: int, every: int, epochs: int) -> float:
    """torchvision's decay adjustment (``adjust = world_size * batch_size * model_ema_steps / epochs``)."""
    alpha = min(1.0, (1.0 - decay) * global_batch * every / max(epochs, 1))
    return 1.0 - alpha


def stuck_note(decay: float, *, every: int, global_batch: int, epochs: int, total_steps: int,
               warmup_steps: int = 0) -> Optional[str]:
    """One line when the EMA (``decay`` as given, adjusted as torchvision's) keeps more than
    ``STUCK`` of its start over the run's ``total_steps`` optimizer steps, with the
    ``--model-ema-decay`` that would move it; None when it moves."""
    updates = max(total_steps - warmup_steps, 0) // max(every, 1)
    adjusted = adjusted_decay(decay, global_batch=global_batch, every=every, epochs=epochs)
    kept = adjusted ** updates
    if kept < STUCK:
        return None
    head = (f"=> --model-ema: decay {decay:g} every {every} steps ({adjusted:.6g} after torchvision's adjustment) "
            f"over this run's {updates} EMA updates keeps {kept:.1%} of the EMA's start: it will not move")
    if updates == 0:
        return f"{head}; use --model-ema-steps N below {max(total_steps - warmup_steps, 1)}"
    wanted = TARGET ** (1.0 / updates)  # adjusted decay that keeps TARGET of the start
    suggest = 1.0 - (1.0 - wanted) * max(epochs, 1) / (global_batch * every)  # before the adjustment
    return f"{head}; --model-ema-decay {suggest:.6g} moves it ({TARGET:.0%} of its start left at the end)"


def _ema_multi_avg_fn(decay: float):
    """``ema = decay * ema + (1 - decay) * weights`` over float tensors; integer buffers copied."""

    @torch.no_grad()
    def update(averaged: List[torch.Tensor], current: List[torch.Tensor], _n_averaged: torch.Tensor) -> None:
        if averaged[0].is_floating_point():  # one dtype per call (AveragedModel groups them)
            torch._foreach_lerp_(averaged, current, 1.0 - decay)
        else:
            for a, c in zip(averaged, current):
                a.copy_(c)

    return update


def _warmup_multi_avg_fn(decay: float):
    """timm's decay warm-up: the t-th update's decay is min(decay, 1 - (1 + t) ** -2/3)."""

    @torch.no_grad()
    def update(averaged: List[torch.Tensor], current: List[torch.Tensor], n_averaged: torch.Tensor) -> None:
        weight = torch.clamp((1.0 + n_averaged.double()) ** -WARMUP_POWER, min=1.0 - decay)  # = 1 - decay_t
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c, weight.to(a.dtype))
            else:  # integer buffers (BatchNorm's num_batches_tracked): follow the model
                a.copy_(c)

    return update


class ModelEma(AveragedModel):
    """The EMA of a model's parameters and buffers. ``after_step(model, step)`` after each
    optimizer step (``step``: optimizer steps since the run began) updates it every ``every``
    steps, and keeps it a copy of the weights during the first ``warmup_steps``."""

    def __init__(self, model: nn.Module, *, decay: float, every: int = 32, warmup_steps: int = 0,
                 decay_warmup: bool = False):
        fn = _warmup_multi_avg_fn(decay) if decay_warmup else _ema_multi_avg_fn(decay)
        super().__init__(model, multi_avg_fn=fn, use_buffers=True)
        self.decay, self.every, self.warmup_steps = decay, every, warmup_steps

    def after_step(self, model: nn.Module, step: int) -> None:
        if step % self.every:
            return
        self.update_parameters(model)
        if step < self.warmup_steps:
            self.n_averaged.fill_(0)  # the next update copies the weights again (torchvision)
