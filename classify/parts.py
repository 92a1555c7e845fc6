"""Building the model and the training parts: the one place that wires them, used by
``classify.run`` and by ``tools/bench.py`` alike (so the bench measures what trains)."""

import math
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

import models

from .amp import AmpSettings, make_scaler
from .blurpool import apply_blurpool
from .schema import LeverConfig, OptimConfig
from .ema import ModelEma, adjusted_decay, stuck_note
from .fast import prepare_model
from .loop import TrainParts
from .optim import make_optimizer
from .schedules import build_scheduler
from .transforms import Normalize, batch_mix

__all__ = ["build_model", "build_train_parts", "sync_batchnorm", "freeze_except", "ema_note"]


def build_model(arch: str, *, num_classes: int, device: torch.device, channels_last: bool,
                model_kwargs: Optional[Dict[str, Any]] = None, blurpool: bool = False) -> nn.Module:
    """The registered network on ``device`` (NHWC when ``channels_last``; ``blurpool``: with
    ``classify.blurpool``'s anti-aliased downsampling), not compiled."""
    model = models.create_model(arch, num_classes=num_classes, **(model_kwargs or {}))
    if blurpool:
        apply_blurpool(model)
    return prepare_model(model, device, channels_last=channels_last, compile_model=False)


def build_train_parts(model: nn.Module, *, arch: str, optim: OptimConfig, steps_per_epoch: int,
                      device: torch.device, amp: AmpSettings, normalize: Normalize, distributed: bool = False,
                      compile_model: bool = False, nan_skips: int = 0,
                      levers: Optional[LeverConfig] = None, num_classes: int = 0,
                      backbone_lr_scale: float = 1.0, freeze_backbone: bool = False) -> TrainParts:
    """Optimizer, per-step lr schedule, grad scaler, DDP and torch.compile wrappers, and the
    network's training loss (label smoothing from ``optim``); ``levers``: those beyond the seeds'.
    Fine-tuning: ``freeze_backbone`` trains the net's head only; ``backbone_lr_scale``: the lr of
    the other layers over the head's."""
    levers = levers or LeverConfig()
    head = models.get_model_entry(arch).head
    if distributed and levers.sync_bn and device.type != "cpu":  # DDP refuses SyncBatchNorm on CPU modules
        model = sync_batchnorm(model)
    frozen = freeze_except(model, head) if freeze_backbone else ()  # after SyncBN replaced its modules
    optimizer = make_optimizer(model, name=optim.opt, lr=optim.lr, momentum=optim.momentum,
                               weight_decay=optim.weight_decay, device=device, norm_weight_decay=levers.norm_weight_decay,
                               bias_weight_decay=levers.bias_weight_decay, head=head,
                               backbone_lr_scale=backbone_lr_scale)
    # The schedule steps once per optimizer step: with accumulation, once per group of batches.
    opt_steps = math.ceil(steps_per_epoch / levers.grad_accum_steps)  # optimizer steps per epoch
    scheduler = build_scheduler(optimizer, name=optim.lr_scheduler, epochs=optim.epochs,
                                steps_per_epoch=opt_steps,
                                warmup_epochs=optim.warmup_epochs, warmup_method=levers.lr_warmup_method,
                                warmup_decay=levers.lr_warmup_decay,
                                milestones=optim.lr_epochs, step=optim.lr_step, gamma=optim.lr_gamma,
                                min_factor=optim.lr_min / optim.lr if optim.lr else 0.0)
    ema = _model_ema(model, levers, optim=optim, opt_steps_per_epoch=opt_steps)
    if distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type != "cpu" else None)
    if compile_model:
        model = torch.compile(model)
    # check_finite: every loss checked on the host before the update, free on the CPU (no device to
    # sync); accelerators check the averaged loss at print intervals instead.
    return TrainParts(model=model, criterion=nn.CrossEntropyLoss(label_smoothing=optim.label_smoothing).to(device),
                      optimizer=optimizer, scheduler=scheduler, scaler=make_scaler(device, amp), device=device,
                      amp=amp, normalize=normalize, loss_fn=models.get_model_entry(arch).loss,
                      check_finite=device.type == "cpu", nan_skips=nan_skips,
                      accum_steps=levers.grad_accum_steps, clip_grad_norm=levers.clip_grad_norm, ema=ema,
                      mix=batch_mix(mixup_alpha=levers.mixup_alpha, cutmix_alpha=levers.cutmix_alpha,
                                    switch_prob=levers.mixup_switch_prob, num_classes=num_classes),
                      frozen=frozen)


def freeze_except(model: nn.Module, head) -> tuple:
    """``--freeze-backbone``: every parameter outside the ``head`` modules stops training; returns
    the largest submodules that hold no head, which the loop keeps in eval mode (their BN
    statistics stay as loaded and their dropout is off: the head learns on fixed features)."""
    ancestors = {".".join(name.split(".")[:i]) for name in head for i in range(len(name.split(".")))}
    frozen = []

    def walk(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = prefix + name
            if full in head:
                continue
            if full in ancestors:
                walk(full + ".", child)
            else:
                frozen.append(child)

    walk("", model)
    for module in frozen:
        module.requires_grad_(False)
    for name in ancestors:  # parameters held directly by a module above a head (none in our nets)
        try:
            above = model.get_submodule(name)
        except AttributeError:  # a head the model was built without (GoogLeNet's aux heads)
            continue
        for p in above.parameters(recurse=False):
            p.requires_grad_(False)
    return tuple(frozen)


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """``--sync-bn``: torch's SyncBatchNorm in place of every BatchNorm layer (the container and
    its parameters stay the same objects, so the optimizer and checkpoints see no change)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _model_ema(model: nn.Module, levers: LeverConfig, *, optim: OptimConfig, opt_steps_per_epoch: int):
    """``--model-ema``: the EMA of the bare model, with torchvision's decay adjustment."""
    if not levers.model_ema:
        return None
    decay = adjusted_decay(levers.model_ema_decay, global_batch=optim.batch_size * levers.grad_accum_steps,
                           every=levers.model_ema_steps, epochs=optim.epochs)
    return ModelEma(model, decay=decay, every=levers.model_ema_steps, decay_warmup=levers.model_ema_warmup,
                    warmup_steps=round(optim.warmup_epochs * opt_steps_per_epoch))


def ema_note(levers: LeverConfig, *, optim: OptimConfig, steps_per_epoch: int) -> Optional[str]:
    """``--model-ema`` whose decay leaves the EMA at its start over the run: one line (else None)."""
    if not levers.model_ema or levers.model_ema_warmup:  # timm's decay warm-up moves it early on
        return None
    opt_steps = math.ceil(steps_per_epoch / levers.grad_accum_steps)
    return stuck_note(levers.model_ema_decay, every=levers.model_ema_steps,
                      global_batch=optim.batch_size * levers.grad_accum_steps, epochs=optim.epochs,
                      total_steps=optim.epochs * opt_steps, warmup_steps=round(optim.warmup_epochs * opt_steps))
