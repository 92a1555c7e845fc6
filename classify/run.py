"""One run: device/dist setup -> data -> model -> epochs (train, evaluate, checkpoint) -> report.

``run(cfg)`` is what ``main.py`` calls, in one process or in each torchrun worker.
"""

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Dict

import torch
import torch.nn as nn

import models

from .amp import AmpSettings, resolve_amp
from .checkpoint import CheckpointManager, Progress, TrainingObjects, load_checkpoint, load_model_weights
from .config import Config
from .data import DataSpec, build_datasets, build_loader, check_splits, count_classes, data_root
from .devices import cpu_count, manual_seed_all, pin_memory, resolve_device
from .distributed import DistInfo, broadcast_buffers, cleanup, dist_info_from_env, init_distributed
from .errors import Interrupted, NonFiniteLoss, UserError
from .fast import use_channels_last
from .guard import StopRequest
from .lock import output_lock
from .loop import EpochPlan, TrainParts, evaluate, train_one_epoch
from .parts import build_model, build_train_parts
from .pretrained import load_pretrained
from .report import Reporter, prepare_output_dir, run_summary
from .transforms import Normalize

__all__ = ["run"]


def run(cfg: Config) -> Dict:
    """Train (or evaluate with ``cfg.output.evaluate``); returns the summary dict (rank 0's view)."""
    info = dist_info_from_env()
    device = resolve_device(cfg.device, info.local_rank, None if info.enabled else cfg.device_id)
    init_distributed(info, device, backend=cfg.dist_backend)
    try:
        with output_lock(cfg.output.output_dir, is_main=info.is_main, force=cfg.output.force_output_dir) as restarted:
            return _run(cfg, info, device, restarted=restarted)
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
    classes: list = field(default_factory=list)
    restarted: bool = False  # a restart generation of this torchrun job (classify.lock)


def _run(cfg: Config, info: DistInfo, device: torch.device, *, restarted: bool = False) -> Dict:
    reporter = _start(cfg, info, device)
    if cfg.data.backend == "gpu" and device.type not in ("cuda", "cpu"):
        raise UserError(f"--data-backend gpu decodes with nvJPEG on cuda (or on the CPU); on {device.type} "
                        "use --data-backend pil")
    d = cfg.data
    root = data_root(d.kind, d.path)
    data = build_datasets(DataSpec(root=root, image_size=d.image_size, val_resize=d.val_resize,
                                   color_jitter=d.color_jitter, dummy=d.kind == "dummy", dummy_sizes=d.dummy_sizes,
                                   num_classes=d.num_classes or 1000, backend=d.backend))
    num_classes = count_classes(d.num_classes, data.classes)
    channels_last = use_channels_last(device, cfg.precision.channels_last)
    model = build_model(cfg.arch, num_classes=num_classes, device=device, channels_last=channels_last,
                        model_kwargs=cfg.model_kwargs)
    p = cfg.precision
    amp = resolve_amp(device, asked=p.amp, opt_level=p.opt_level, recipe_opt_level=p.recipe_opt_level,
                      loss_scale=p.loss_scale, dtype=p.amp_dtype)
    setup = _Setup(cfg, info, device, reporter, amp, Normalize(d.mean, d.std, channels_last).to(device),
                   list(data.classes), restarted)
    decoded = " (decoded on the device)" if d.backend == "gpu" and root else ""
    reporter.line(f"=> {cfg.arch} ({cfg.recipe}) on {device} x{info.world_size}, {data.kind} data "
                  f"'{root or 'synthetic'}'{decoded}: {len(data.train) if data.train else 0} train / "
                  f"{len(data.val) if data.val else 0} val images, {num_classes} classes, "
                  f"batch {cfg.optim.batch_size} ({cfg.optim.per_device_batch}/device), lr {cfg.optim.lr:g}, "
                  f"amp {amp.name}")
    use_val = data.val is not None and not d.no_val
    check_splits(path=d.path, has_train=data.train is not None, has_val=use_val, evaluate=cfg.output.evaluate)
    val_loader = _loader(setup, data.val, train=False) if use_val else None
    if cfg.output.evaluate:
        return _evaluate_only(setup, model, val_loader)
    return _train(setup, model, _loader(setup, data.train, train=True), val_loader=val_loader)


def _start(cfg: Config, info: DistInfo, device: torch.device) -> Reporter:
    """Output dir, reporter, seeds; a warning when the loaders oversubscribe the CPUs."""
    if info.is_main:
        prepare_output_dir(cfg.output.output_dir)
    reporter = Reporter(cfg.output.output_dir, info.is_main, tensorboard=cfg.loop.tensorboard)
    manual_seed_all(cfg.seed + info.rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.precision.benchmark  # fixed shapes: let cuDNN pick kernels
    workers, cpus = cfg.data.workers, cpu_count()
    if workers * info.local_world_size > cpus:
        reporter.line(f"warning: {workers} loader workers x {info.local_world_size} processes > {cpus} CPUs; "
                      f"this oversubscribes the CPUs (try -j {max(1, cpus // info.local_world_size)})")
    return reporter


def _loader(setup: _Setup, dataset, *, train: bool):
    cfg, info = setup.cfg, setup.info
    return build_loader(dataset, batch_size=cfg.optim.per_device_batch, workers=cfg.data.workers, train=train,
                        rank=info.rank, world_size=info.world_size, seed=cfg.seed,
                        pin_memory=pin_memory(setup.device), device=setup.device)


def _load_weights(setup: _Setup, model: nn.Module, source: str, *, pretrained: bool) -> None:
    """``--pretrained`` (a file or torchvision's cache) or ``-e --resume`` weights into ``model``."""
    arch = setup.cfg.arch
    state = load_pretrained(source, arch) if pretrained else load_checkpoint(source)
    load_model_weights(model, state, path=source, arch=arch)
    hook = models.get_model_entry(arch).after_pretrained
    if hook is not None:
        hook(model, "torchvision" if state.get("torchvision") else None)


def _evaluate(setup: _Setup, model: nn.Module, val_loader) -> Dict:
    stats = evaluate(model, val_loader, device=setup.device, amp=setup.amp, normalize=setup.normalize)
    setup.reporter.eval_result(stats["acc1"], stats["acc5"])
    return stats


def _evaluate_only(setup: _Setup, model: nn.Module, val_loader) -> Dict:
    out = setup.cfg.output
    if out.resume:
        _load_weights(setup, model, out.resume, pretrained=False)
    elif out.pretrained:
        _load_weights(setup, model, out.pretrained, pretrained=True)
    setup.reporter.write_json("config.json", setup.cfg.to_dict())
    start = time.perf_counter()
    stats = _evaluate(setup, model, val_loader)
    summary = _summary(setup, _TrainState(Progress(best_acc1=stats["acc1"]), last_eval=stats), train_time=0.0)
    summary["eval_time_s"] = round(time.perf_counter() - start, 3)
    setup.reporter.summary(summary)
    return summary


@dataclass
class _TrainState:
    progress: Progress
    fps: float = 0.0
    bad_images: int = 0
    last_eval: Dict = field(default_factory=dict)


def _train(setup: _Setup, model: nn.Module, train_loader, *, val_loader) -> Dict:
    cfg, info, reporter = setup.cfg, setup.info, setup.reporter
    if cfg.output.pretrained:
        _load_weights(setup, model, cfg.output.pretrained, pretrained=True)
    parts = build_train_parts(model, arch=cfg.arch, optim=cfg.optim, steps_per_epoch=len(train_loader),
                              device=setup.device, amp=setup.amp, normalize=setup.normalize,
                              distributed=info.enabled, compile_model=cfg.precision.compile,
                              nan_skips=cfg.loop.nan_skips)
    if cfg.loop.prof:
        return _profile(setup, parts, train_loader)
    objects = TrainingObjects(model, parts.optimizer, parts.scheduler, parts.scaler)
    ckpt = CheckpointManager(cfg.output.output_dir, is_main=info.is_main, keep=cfg.output.keep_checkpoints,
                             run_info={"arch": cfg.arch, "recipe": cfg.recipe, "args": cfg.flat(),
                                       "classes": setup.classes})
    state = _TrainState(ckpt.resume(_resume_flag(setup, ckpt), objects, arch=cfg.arch, rank=info.rank,
                                    world_size=info.world_size, log=reporter.line)
                        or Progress(epoch=cfg.optim.start_epoch))
    # Written once everything the run starts from is in place (a run that fails before this
    # leaves the output dir, and the config.json of the run that wrote it, untouched).
    reporter.write_json("config.json", cfg.to_dict())
    if state.progress.epoch >= cfg.optim.epochs:
        reporter.line(f"=> all {cfg.optim.epochs} epochs are already trained; nothing to train (pass more "
                      "--epochs or a new --output-dir); evaluating the checkpoint")
        if val_loader is not None:
            state.last_eval = _evaluate(setup, model, val_loader)
    train_start = time.perf_counter()
    with StopRequest() as stop:
        try:
            _epochs(setup, parts, ckpt, objects=objects, train_loader=train_loader, val_loader=val_loader,
                    state=state, stop=stop)
        except NonFiniteLoss as e:
            raise ckpt.after_nonfinite(objects, state.progress, e) from None
    summary = _summary(setup, state, train_time=time.perf_counter() - train_start)
    reporter.summary(summary)
    reporter.close()
    return summary


def _resume_flag(setup: _Setup, ckpt: CheckpointManager):
    """``--resume``; in a restart generation the newest checkpoint of the output dir, whatever
    was passed: a restarted worker never starts again from less progress than was saved."""
    resume = setup.cfg.output.resume
    if setup.restarted and ckpt.resume_path("auto") is not None:
        setup.reporter.line(f"=> torchrun restarted the workers (job {os.environ.get('TORCHELASTIC_RUN_ID')}): "
                            f"continuing from the newest checkpoint in '{ckpt.output_dir}' (as --resume auto)")
        return "auto"
    return resume


def _profile(setup: _Setup, parts: TrainParts, train_loader) -> Dict:
    from .profiling import profile_training

    train_loader.sampler.set_epoch(0)
    return profile_training(parts, train_loader, out_dir=setup.cfg.output.output_dir, report=setup.reporter.line)


def _epochs(setup: _Setup, parts: TrainParts, ckpt: CheckpointManager, *, objects: TrainingObjects, train_loader,
            val_loader, state: _TrainState, stop: StopRequest) -> None:
    cfg, progress = setup.cfg, state.progress
    steps_per_epoch, steps_left = len(train_loader), cfg.loop.stop_step_num

    def after_step(step: int) -> None:
        progress.step = step
        interval = cfg.output.ckpt_interval
        if interval and step % interval == 0 and step < steps_per_epoch:
            ckpt.save(objects, progress)
            setup.reporter.line(f"=> saved checkpoint at epoch {progress.epoch} step {step}")

    for epoch in range(progress.epoch, cfg.optim.epochs):
        progress.epoch = epoch
        train_loader.sampler.set_epoch(epoch)
        train_loader.sampler.skip(progress.step * cfg.optim.per_device_batch)
        plan = EpochPlan(epoch=epoch, steps_per_epoch=steps_per_epoch, start_step=progress.step,
                         max_steps=steps_left, epochs_left=cfg.optim.epochs - epoch - 1,
                         print_freq=cfg.loop.print_freq, world_size=setup.info.world_size,
                         max_bad_fraction=cfg.loop.max_bad_images)
        stats = train_one_epoch(parts, train_loader, plan, setup.reporter, stop=stop, after_step=after_step)
        if stats["stop_signal"]:
            ckpt.save(objects, progress)
            raise Interrupted(f"stopped by {signal.Signals(stats['stop_signal']).name} at epoch {epoch} step "
                              f"{progress.step}; checkpoint saved to {ckpt.latest_path}; continue with "
                              "--resume auto", stats["stop_signal"])
        _end_epoch(setup, ckpt, objects, state=state, stats=stats, val_loader=val_loader)
        if steps_left is not None:
            steps_left -= stats["steps"]
            if steps_left <= 0:
                break


def _end_epoch(setup: _Setup, ckpt: CheckpointManager, objects: TrainingObjects, *, state: _TrainState,
               stats: Dict, val_loader) -> None:
    """FPS line, evaluation, checkpoints (best: the first evaluation, then any better Acc@1), record."""
    epoch, reporter, progress = state.progress.epoch, setup.reporter, state.progress
    if stats["steps"]:  # none: resumed after a stop at the epoch's last step, only its end was left
        state.fps = stats["fps"]
        reporter.fps(epoch, state.fps)
    state.bad_images += int(stats["bad_images"])
    if stats["bad_images"]:
        reporter.line(f"[epoch {epoch}] skipped {int(stats['bad_images'])} unreadable images")
    if val_loader is not None:
        model = objects.model  # the bare module (DDP's forward would be a collective per batch)
        broadcast_buffers(model)  # evaluate with the BN statistics the checkpoint holds (rank 0's)
        state.last_eval = _evaluate(setup, model, val_loader)
    acc1 = state.last_eval.get("acc1")
    is_best = acc1 is not None and (progress.best_acc1 is None or acc1 > progress.best_acc1)
    if is_best:
        progress.best_acc1 = acc1
    progress.epoch, progress.step = epoch + 1, 0
    ckpt.save(objects, progress, is_best=is_best, finished_epoch=epoch)
    reporter.epoch_record(epoch, lr=objects.optimizer.param_groups[0]["lr"], train=stats, val=state.last_eval)


def _summary(setup: _Setup, state: _TrainState, *, train_time: float) -> Dict:
    cfg = setup.cfg
    return run_summary(arch=cfg.arch, recipe=cfg.recipe, epochs=state.progress.epoch,
                       world_size=setup.info.world_size, global_batch_size=cfg.optim.batch_size,
                       best_acc1=state.progress.best_acc1, last_eval=state.last_eval, fps=state.fps,
                       train_time=train_time, device=setup.device, amp=setup.amp.name, bad_images=state.bad_images)
