"""One run: device/dist setup -> data -> model -> epochs (train, evaluate, checkpoint) -> report.

``run(cfg)`` is what ``main.py`` calls, in one process or in each torchrun worker.
"""

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

import models

from .amp import AmpSettings, make_scaler, resolve_amp
from .checkpoint import find_latest, load_checkpoint, load_model_weights, model_state, save_atomic
from .config import Config
from .data import DataSpec, build_datasets, build_loader
from .devices import manual_seed_all, pin_memory, resolve_device, rng_state, set_rng_state
from .distributed import (DistInfo, broadcast_buffers, cleanup, dist_info_from_env, gather_objects,
                          init_distributed)
from .errors import UserError
from .guard import Interrupted, NonFiniteLoss, StopRequest
from .fast import make_optimizer, prepare_model, use_channels_last
from .loop import EpochPlan, TrainParts, evaluate, train_one_epoch
from .pretrained import load_pretrained
from .report import Reporter
from .schedules import build_scheduler
from .transforms import Normalize

__all__ = ["run"]


def run(cfg: Config) -> Dict:
    """Train (or evaluate with ``cfg.evaluate``); returns the summary dict (rank 0's view)."""
    info = dist_info_from_env()
    device = resolve_device(cfg.device, info.local_rank, None if info.enabled else cfg.device_id)
    init_distributed(info, device, cfg.dist_backend)
    try:
        return _run(cfg, info, device)
    finally:
        cleanup()


@dataclass
class _Setup:
    """What every phase of a run shares."""

    cfg: Config
    info: DistInfo
    device: torch.device
    reporter: Reporter
    amp: AmpSettings
    normalize: Normalize
    criterion: nn.Module
    classes: list


def _run(cfg: Config, info: DistInfo, device: torch.device) -> Dict:
    if info.is_main:
        _prepare_output_dir(cfg.output_dir)
    reporter = Reporter(cfg.output_dir, info.is_main, tensorboard=cfg.tensorboard)
    manual_seed_all(cfg.seed + info.rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.benchmark  # fixed shapes: let cuDNN pick kernels
    _warn_workers(cfg.workers, info.local_world_size, reporter)
    if cfg.data_backend == "gpu" and device.type not in ("cuda", "cpu"):
        raise UserError(f"--data-backend gpu decodes with nvJPEG on cuda (or on the CPU); on {device.type} "
                        "use --data-backend pil")
    root = _data_root(cfg)
    spec = DataSpec(root, cfg.image_size, cfg.val_resize, cfg.color_jitter, cfg.data_kind == "dummy",
                    cfg.dummy_sizes, cfg.num_classes or 1000, cfg.data_backend)
    data = build_datasets(spec)
    num_classes = _num_classes(cfg.num_classes, data.classes)
    channels_last = use_channels_last(device, cfg.channels_last)
    model = prepare_model(models.create_model(cfg.arch, num_classes=num_classes, **cfg.model_kwargs), device,
                          channels_last, compile_model=False)
    amp = resolve_amp(device, cfg.amp, cfg.opt_level, cfg.recipe_opt_level, cfg.loss_scale, cfg.amp_dtype)
    setup = _Setup(cfg, info, device, reporter, amp, Normalize(cfg.mean, cfg.std, channels_last).to(device),
                   nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing).to(device), data.classes)
    decoded = " (decoded on the device)" if cfg.data_backend == "gpu" and root else ""
    reporter.line(f"=> {cfg.arch} ({cfg.recipe}) on {device} x{info.world_size}, {data.kind} data "
                  f"'{root or 'synthetic'}'{decoded}: {len(data.train) if data.train else 0} train / "
                  f"{len(data.val) if data.val else 0} val images, {num_classes} classes, "
                  f"batch {cfg.batch_size} ({cfg.per_device_batch}/device), lr {cfg.lr:g}, amp {amp.name}")
    val_loader = None
    if data.val is not None and not cfg.no_val:
        val_loader = build_loader(data.val, cfg.per_device_batch, cfg.workers, False, info.rank,
                                  info.world_size, pin_memory=pin_memory(device), device=device)
    if cfg.evaluate:
        return _evaluate_only(setup, model, val_loader)
    if data.train is None:
        raise UserError(f"'{cfg.data}' is a validation folder; training needs train/ (or pass -e to evaluate)")
    train_loader = build_loader(data.train, cfg.per_device_batch, cfg.workers, True, info.rank,
                                info.world_size, cfg.seed, pin_memory(device), device)
    return _train(setup, model, train_loader, val_loader)


def _warn_workers(workers: int, local_world: int, reporter: Reporter) -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers * local_world > cpus:
        reporter.line(f"warning: {workers} loader workers x {local_world} processes > {cpus} CPUs; "
                      f"this oversubscribes the CPUs (try -j {max(1, cpus // local_world)})")


def _data_root(cfg: Config) -> Optional[str]:
    if cfg.data_kind == "demo":
        from .data.demo import ensure_demo_data

        return str(ensure_demo_data())
    return cfg.data


def _num_classes(flag: Optional[int], classes: list) -> int:
    if flag is None:
        return len(classes)
    if flag < len(classes):
        raise UserError(f"--num-classes {flag} is less than the {len(classes)} classes in the data; "
                        f"drop the flag or pass --num-classes {len(classes)}")
    return flag


def _prepare_output_dir(path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test.{time.time_ns()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UserError(f"output dir '{path}' is not writable ({e.strerror}); "
                        "pass --output-dir to a writable folder") from None


def _load_weights(setup: _Setup, model: nn.Module, source: str, pretrained: bool) -> dict:
    arch = setup.cfg.arch
    state = load_pretrained(source, arch) if pretrained else load_checkpoint(source)
    load_model_weights(model, state, source, arch)
    if state.get("torchvision") and arch == "googlenet":
        model.transform_input = True  # torchvision's ImageNet GoogLeNet weights expect it
    return state


def _evaluate_only(setup: _Setup, model: nn.Module, val_loader) -> Dict:
    cfg = setup.cfg
    if val_loader is None:
        raise UserError("-e/--evaluate needs a val/ split; pass the data root holding val/ (without --no-val)")
    if cfg.resume:
        _load_weights(setup, model, cfg.resume, pretrained=False)
    elif cfg.pretrained:
        _load_weights(setup, model, cfg.pretrained, pretrained=True)
    start = time.perf_counter()
    stats = evaluate(model, val_loader, setup.device, setup.amp, setup.normalize, setup.criterion)
    setup.reporter.eval_result(stats["acc1"], stats["acc5"])
    summary = _summary(setup, epochs=0, best=stats["acc1"], last=stats, fps=0.0,
                       train_time=0.0)
    summary["eval_time_s"] = round(time.perf_counter() - start, 3)
    setup.reporter.summary(summary)
    return summary


def _build_parts(setup: _Setup, model: nn.Module, steps_per_epoch: int) -> TrainParts:
    cfg, device = setup.cfg, setup.device
    optimizer = make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, device)
    scheduler = build_scheduler(optimizer, cfg.lr_scheduler, cfg.epochs, steps_per_epoch, cfg.warmup_epochs,
                                cfg.lr_epochs, cfg.lr_step, cfg.lr_gamma)
    if setup.info.enabled:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type != "cpu" else None)
    if cfg.compile:
        model = torch.compile(model)
    return TrainParts(model, setup.criterion, optimizer, scheduler, make_scaler(device, setup.amp), device,
                      setup.amp, setup.normalize, check_finite=device.type == "cpu", nan_skips=cfg.nan_skips)


def _train(setup: _Setup, model: nn.Module, train_loader, val_loader) -> Dict:
    cfg, reporter = setup.cfg, setup.reporter
    if cfg.pretrained:
        _load_weights(setup, model, cfg.pretrained, pretrained=True)
    steps_per_epoch = len(train_loader)
    parts = _build_parts(setup, model, steps_per_epoch)
    if cfg.prof:
        return _profile(setup, parts, train_loader)
    state = _TrainState(epoch=cfg.start_epoch)
    resume = _resume_path(setup)
    if resume:
        _resume(setup, model, parts, resume, state)
    if state.epoch >= cfg.epochs:
        reporter.line(f"=> all {cfg.epochs} epochs are already trained; nothing to train (pass more --epochs or "
                      "a new --output-dir); evaluating the checkpoint")
        if val_loader is not None:
            state.last_eval = evaluate(model, val_loader, setup.device, setup.amp, setup.normalize, setup.criterion)
            reporter.eval_result(state.last_eval["acc1"], state.last_eval["acc5"])
    with StopRequest(setup.device, every=cfg.print_freq) as stop:
        train_start = time.perf_counter()
        try:
            _epochs(setup, model, parts, train_loader, val_loader, state, stop)
        except NonFiniteLoss as e:
            _nonfinite(setup, model, parts, state, e)
    summary = _summary(setup, epochs=state.epoch, best=state.best, last=state.last_eval, fps=state.fps,
                       train_time=time.perf_counter() - train_start)
    summary["bad_images"] = state.bad_images
    reporter.summary(summary)
    reporter.close()
    return summary


def _profile(setup: _Setup, parts: TrainParts, train_loader) -> Dict:
    from .profiling import profile_training

    train_loader.sampler.set_epoch(0)
    paths = profile_training(parts, train_loader, setup.cfg.output_dir)
    if setup.info.is_main:
        print(Path(paths["table"]).read_text(), flush=True)
    setup.reporter.line(f"=> profile written: {paths['trace']} (chrome://tracing) and {paths['table']}")
    return paths


@dataclass
class _TrainState:
    """Where training is: ``epoch`` (current, or next when step == 0) and ``step`` within it."""

    epoch: int = 0
    step: int = 0
    best: Optional[float] = None  # best Acc@1 so far; None before the first evaluation
    fps: float = 0.0
    bad_images: int = 0
    last_eval: Dict = None

    def __post_init__(self):
        self.last_eval = self.last_eval or {}


def _epochs(setup: _Setup, model, parts: TrainParts, train_loader, val_loader, state: _TrainState,
            stop: StopRequest) -> None:
    cfg, reporter = setup.cfg, setup.reporter
    steps_per_epoch, steps_left = len(train_loader), cfg.stop_step_num
    sampler = train_loader.sampler

    def after_step(step: int) -> bool:
        state.step = step
        if cfg.ckpt_interval and step % cfg.ckpt_interval == 0 and step < steps_per_epoch:
            _save(setup, model, parts, state, is_best=False)
            reporter.line(f"=> saved checkpoint at epoch {state.epoch} step {step}")
        if stop.requested(step):
            _save(setup, model, parts, state, is_best=False)
            name = signal.Signals(stop.signum).name
            raise Interrupted(f"stopped by {name} at epoch {state.epoch} step {step}; checkpoint saved to "
                              f"{cfg.output_dir / 'checkpoint.pth.tar'}; continue with --resume auto", stop.signum)
        return False

    for epoch in range(state.epoch, cfg.epochs):
        state.epoch = epoch
        sampler.set_epoch(epoch)
        sampler.skip(state.step * cfg.per_device_batch)
        plan = EpochPlan(epoch, steps_per_epoch, state.step, steps_left, cfg.epochs - epoch - 1,
                         cfg.print_freq, setup.info.world_size, cfg.max_bad_images)
        stats = train_one_epoch(parts, train_loader, plan, reporter, after_step)
        state.fps = stats["fps"]
        reporter.fps(epoch, state.fps)
        state.bad_images += int(stats["bad_images"])
        if stats["bad_images"]:
            reporter.line(f"[epoch {epoch}] skipped {int(stats['bad_images'])} unreadable images")
        if val_loader is not None:
            broadcast_buffers(model)  # evaluate with the BN statistics the checkpoint holds (rank 0's)
            state.last_eval = evaluate(model, val_loader, setup.device, setup.amp, setup.normalize, setup.criterion)
            reporter.eval_result(state.last_eval["acc1"], state.last_eval["acc5"])
        # The first evaluated epoch is always "best" (even at 0%), so model_best.pth.tar exists.
        is_best = bool(state.last_eval) and (state.best is None or state.last_eval["acc1"] > state.best)
        if is_best:
            state.best = state.last_eval["acc1"]
        state.epoch, state.step = epoch + 1, 0
        _save(setup, model, parts, state, is_best)
        reporter.epoch_record(_epoch_record(epoch, parts, stats, state.last_eval))
        if steps_left is not None:
            steps_left -= stats["steps"]
            if steps_left <= 0:
                break


def _nonfinite(setup: _Setup, model, parts: TrainParts, state: _TrainState, error: NonFiniteLoss) -> None:
    """--nan-policy: save the last good state when the bad step was not applied, then stop."""
    path = setup.cfg.output_dir / "checkpoint.pth.tar"
    if error.step is not None:
        state.step = error.step
        _save(setup, model, parts, state, is_best=False)
        where = f"the last good state is saved in {path}"
    else:
        where = f"{path} holds the last checkpoint written before it"
    raise NonFiniteLoss(f"{error}; {where}. Lower --lr, add warm-up (--warmup-epochs) or use --amp with a "
                        "loss scale, then --resume", error.step)


def _epoch_record(epoch: int, parts: TrainParts, train: Dict, val: Dict) -> Dict:
    return {"epoch": epoch, "lr": parts.optimizer.param_groups[0]["lr"],
            "train_loss": _round(train["loss"]), "train_acc1": _round(train["acc1"]),
            "val_loss": _round(val.get("loss")), "acc1": _round(val.get("acc1")), "acc5": _round(val.get("acc5")),
            "img_per_s": round(train["fps"], 1), "epoch_time_s": round(train["time_s"], 3),
            "train_images": int(train["images"]), "bad_images": int(train["bad_images"])}


def _round(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def _save(setup: _Setup, model: nn.Module, parts: TrainParts, state: _TrainState, is_best: bool) -> None:
    """Rank 0 writes; every rank contributes its RNG state (a collective when distributed)."""
    rng = gather_objects(rng_state())
    if not setup.info.is_main:
        return
    cfg = setup.cfg
    ckpt = {
        "state_dict": model_state(model), "optimizer": parts.optimizer.state_dict(),
        "lr_scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "epoch": state.epoch, "step": state.step, "best_acc1": state.best, "arch": cfg.arch, "recipe": cfg.recipe,
        "args": cfg.to_dict(), "rng": rng[0], "rng_per_rank": rng, "classes": list(setup.classes),
    }
    save_atomic(ckpt, cfg.output_dir / "checkpoint.pth.tar")
    if is_best:
        save_atomic(ckpt, cfg.output_dir / "model_best.pth.tar")


def _resume_path(setup: _Setup) -> Optional[str]:
    cfg = setup.cfg
    if cfg.resume != "auto":
        return cfg.resume
    found = find_latest(cfg.output_dir, lambda msg: print(msg, file=sys.stderr, flush=True))
    if found is None:
        setup.reporter.line(f"=> --resume auto: no checkpoint in '{cfg.output_dir}', starting from scratch")
        return None
    return str(found[0])


def _resume(setup: _Setup, model: nn.Module, parts: TrainParts, path: str, state: _TrainState) -> None:
    """Restore everything a checkpoint holds into ``parts`` and ``state``."""
    ckpt = load_checkpoint(path)
    load_model_weights(model, ckpt, path, setup.cfg.arch)
    for key in ("optimizer", "lr_scheduler"):
        if key not in ckpt:
            raise UserError(f"'{path}' holds weights only (no {key}); use --pretrained {path} to start from it")
    kernels = {k: parts.optimizer.defaults.get(k) for k in ("fused", "foreach")}
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    for group in parts.optimizer.param_groups:  # this run's device decides, not the saving run's
        group.update(kernels)
    parts.scheduler.load_state_dict(ckpt["lr_scheduler"])
    if parts.scaler is not None and ckpt.get("scaler"):
        parts.scaler.load_state_dict(ckpt["scaler"])
    per_rank = ckpt.get("rng_per_rank") or [ckpt.get("rng")]
    if len(per_rank) == setup.info.world_size and per_rank[setup.info.rank]:
        set_rng_state(per_rank[setup.info.rank])
    state.epoch, state.step = int(ckpt["epoch"]), int(ckpt.get("step", 0))
    state.best = ckpt.get("best_acc1")
    setup.reporter.line(f"=> resumed from '{path}' (epoch {state.epoch}, step {state.step})")


def _summary(setup: _Setup, epochs: int, best: float, last: Dict, fps: float, train_time: float) -> Dict:
    cfg = setup.cfg
    return {
        "arch": cfg.arch, "recipe": cfg.recipe, "epochs": epochs, "world_size": setup.info.world_size,
        "global_batch_size": cfg.batch_size, "best_acc1": _round(best),
        "final_acc1": _round(last.get("acc1")), "final_acc5": _round(last.get("acc5")),
        "fps": round(fps, 1), "train_time_s": round(train_time, 3), "device": str(setup.device),
        "amp": setup.amp.name, "val_images": int(last.get("images", 0)),
    }
