"""One run: device/dist setup -> data -> model -> epochs (train, evaluate, checkpoint) -> report.

``run(cfg)`` is what ``main.py`` calls, in one process or in each torchrun worker.
"""

import os
import signal
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn as nn

import models

from .amp import AmpSettings, resolve_amp
from .checkpoint import CheckpointManager, Progress, TrainingObjects, check_start, load_checkpoint, load_model_weights
from .schema import Config, facts_line, run_facts
from .data import (DUMMY_CLASSES, DataSpec, build_datasets, build_loader, check_splits, count_classes, data_root,
                   identity_root)
from .data.stored import larger_crop_note
from .devices import cpu_count, manual_seed_all, pin_memory, resolve_device, use_deterministic
from .distributed import DistInfo, broadcast_buffers, cleanup, dist_info_from_env, init_distributed
from .errors import Interrupted, NonFiniteLoss, UserError
from .fast import net_defaults, use_channels_last
from .guard import StopRequest
from .lock import output_lock
from .loop import EpochPlan, TrainParts, evaluate, train_one_epoch
from .parts import build_model, build_train_parts, ema_note
from .schedules import progressive_size
from .pretrained import TORCHVISION, check_pretrained, load_pretrained, torchvision_weights_path
from .outdir import create_output_dir, prepare_output_dir
from .report import EVAL_DIR, Reporter, run_summary, write_eval_tables
from .identity import identity
from .resolve import finetune_defaults
from .rundir import claim_run, held_run, move_aside
from .transforms import AugmentSpec, Normalize

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
    num_classes: int = 0
    identity: Dict = field(default_factory=dict)  # the run's, with its run_id (classify.rundir)
    restarted: bool = False  # a restart generation of this torchrun job (classify.lock)


def _run(cfg: Config, info: DistInfo, device: torch.device, *, restarted: bool = False) -> Dict:
    reporter = _start(cfg, info, device)
    if cfg.data.backend == "gpu" and device.type not in ("cuda", "cpu"):
        raise UserError(f"--data-backend gpu decodes with nvJPEG on cuda (or on the CPU); on {device.type} "
                        "use --data-backend pil")
    d = cfg.data
    root = data_root(d.kind, d.path)
    prog = cfg.levers.progressive_resize  # the loaders crop at its largest size, the device resizes per epoch
    data = build_datasets(DataSpec(root=root, image_size=max(prog[:2]) if prog else d.image_size,
                                   val_resize=d.val_resize,
                                   val_crop_size=d.val_crop_size, augment=_augment(cfg),
                                   color_jitter=d.color_jitter, dummy=d.kind == "dummy", dummy_sizes=d.dummy_sizes,
                                   num_classes=d.num_classes or DUMMY_CLASSES, backend=d.backend,
                                   index_cache=d.index_cache, data_timeout=d.data_timeout,
                                   rrc_scale=d.rrc_scale, rrc_ratio=d.rrc_ratio))
    num_classes = count_classes(d.num_classes, data.classes)
    out = cfg.output  # what it starts from: the files named are there (the same pre-flight as --check)
    check_start(output_dir=out.output_dir, resume=out.resume, evaluate=out.evaluate, fresh=out.fresh,
                pretrained=lambda: out.pretrained and check_pretrained(out.pretrained, cfg.arch) or None,
                resolve_auto=False)
    p, entry = cfg.precision, models.get_model_entry(cfg.arch)
    own = net_defaults(device, channels_last=p.channels_last, amp_dtype=p.amp_dtype, amp_asked=p.amp,
                       cpu_channels_last=entry.cpu_channels_last, cpu_amp_dtype=entry.cpu_amp_dtype)
    channels_last = use_channels_last(device, own.channels_last)
    model = build_model(cfg.arch, num_classes=num_classes, device=device, channels_last=channels_last,
                        model_kwargs=cfg.model_kwargs, blurpool=cfg.levers.blurpool)
    cfg, started = _start_from_pretrained(cfg, model)  # before the claim: a fresh head may change the epochs
    ident, cfg = _claim(cfg, root, num_classes, restarted)  # may this run use the output dir? (reads only)
    p = cfg.precision
    amp = resolve_amp(device, asked=p.amp, opt_level=p.opt_level, recipe_opt_level=p.recipe_opt_level,
                      loss_scale=p.loss_scale, dtype=own.amp_dtype)
    setup = _Setup(cfg, info, device, reporter, amp, Normalize(d.mean, d.std, channels_last).to(device),
                   list(data.classes), num_classes, ident, restarted)
    decoded = " (decoded on the device)" if d.backend == "gpu" and root else ""
    reporter.line(f"=> {cfg.arch} ({cfg.recipe}) on {device} x{info.world_size}, {data.kind} data "
                  f"'{root or 'synthetic'}'{decoded}: {len(data.train) if data.train else 0} train / "
                  f"{len(data.val) if data.val else 0} val images, {num_classes} classes, "
                  f"batch {cfg.optim.batch_size} ({cfg.optim.per_device_batch}/device){_accum_note(cfg)}, "
                  f"lr {cfg.optim.lr:g}, "
                  f"amp {amp.name}{f' ({cfg.arch} {device.type} defaults: {own.source})' if own.source else ''}")
    if cfg.sources.batch_note:
        reporter.line(cfg.sources.batch_note)
    reporter.line(facts_line(run_facts(cfg, train_images=len(data.train) if data.train else None)))
    for line in started:
        reporter.line(line)
    if cfg.output.continued is not None:
        reporter.line(f"=> '{cfg.output.output_dir}' holds this run, stopped after {cfg.output.continued} of "
                      f"{cfg.optim.epochs} epochs: the same command continues it (as --resume auto; "
                      "--fresh starts over)")
    _check_stored_size(data, cfg, report=reporter.line)
    _check_batch(cfg, data.train, world_size=info.world_size, report=reporter.line)
    use_val = data.val is not None and not d.no_val
    _split_notice(d.path, has_val=data.val is not None, report=reporter.line,
                  training=not cfg.output.evaluate and not d.no_val)
    check_splits(path=d.path, has_train=data.train is not None, has_val=use_val, evaluate=cfg.output.evaluate)
    val_loader = _loader(setup, data.val, train=False) if use_val else None
    if cfg.output.evaluate:
        return _evaluate_only(setup, model, val_loader)
    return _train(setup, model, _loader(setup, data.train, train=True), val_loader=val_loader)


def _check_stored_size(data, cfg: Config, *, report) -> None:
    """Pre-resized data (classify.data.stored): one line when the run crops larger than it was stored."""
    if data.kind not in ("folder", "shards"):
        return
    d, prog = cfg.data, cfg.levers.progressive_resize
    note = larger_crop_note(d.path, max(d.image_size, d.val_crop_size, *(prog[:2] if prog else ())))
    if note is not None:
        report(note)


def _split_notice(path: Optional[str], *, has_val: bool, training: bool, report) -> None:
    """A split folder given as the data (MindSpore style, ``DATA/train``) trains without validation;
    when a ``val/`` sits beside it, say how to validate on it."""
    if not path or has_val or not training:
        return
    split = Path(path).expanduser()
    sibling = split.parent / "val"
    if split.name != "val" and sibling.is_dir():
        report(f"=> training only, no validation: pass {split.parent} to validate on {sibling} each epoch")


def _augment(cfg: Config) -> Optional[AugmentSpec]:
    """--auto-augment/--random-erase for the train transform (None: the seeds' augmentation)."""
    lv = cfg.levers
    if lv.auto_augment is None and not lv.random_erase:
        return None
    return AugmentSpec(auto_augment=lv.auto_augment, ra_magnitude=lv.ra_magnitude,
                       augmix_severity=lv.augmix_severity, random_erase=lv.random_erase, mean=cfg.data.mean)


def _accum_note(cfg: Config) -> str:
    """The header's effective batch with gradient accumulation (nothing without)."""
    n = cfg.levers.grad_accum_steps
    return "" if n == 1 else f" x {n} accumulation steps = effective batch {cfg.optim.batch_size * n}"


def _start(cfg: Config, info: DistInfo, device: torch.device) -> Reporter:
    """Output dir, reporter, seeds; a warning when the loaders oversubscribe the CPUs."""
    if info.is_main:
        prepare_output_dir(cfg.output.output_dir)
    reporter = Reporter(cfg.output.output_dir, info.is_main, tensorboard=cfg.loop.tensorboard,
                        log_format=cfg.loop.log_format, world_size=info.world_size, device=device,
                        per_device_batch=cfg.optim.per_device_batch)
    manual_seed_all(cfg.seed + info.rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.precision.benchmark  # fixed shapes: let cuDNN pick kernels
    if cfg.levers.deterministic:
        reporter.line(f"=> deterministic: {use_deterministic()}")
    workers, cpus = cfg.data.workers, cpu_count()
    # PyTorch's own worker-count warning (once per loader) says less than ours: ours alone.
    warnings.filterwarnings("ignore", message=r"This DataLoader will create \d+ worker processes")
    if workers * info.local_world_size > cpus:
        reporter.line(f"warning: {workers} loader workers x {info.local_world_size} processes > {cpus} CPUs; "
                      f"this oversubscribes the CPUs (try -j {max(1, cpus // info.local_world_size)})")
    return reporter


# Linear lr scaling (Goyal et al., 2017) held up to 8k images from a batch of 256 (32x); beyond
# ~16x of a recipe's point it is a guess the user should make.
_LR_SCALE_WARN = 16


def _check_batch(cfg: Config, train, *, world_size: int, report) -> None:
    """Values that would train garbage: a global batch larger than the training set or one
    that leaves a rank without a full step is an error; an lr scaled far up, a warning."""
    o = cfg.optim
    if cfg.output.evaluate:
        return
    if train is not None:
        images = len(train)
        per_rank = -(-images // world_size)  # the sampler pads every shard to this
        if o.batch_size > images or per_rank < o.per_device_batch:
            raise UserError(f"global batch {o.batch_size} is larger than the {images} training images"
                            f"{f' ({per_rank} per process, batch {o.per_device_batch} each)' if world_size > 1 else ''}"
                            f"; use -b/--batch-size {max(1, images // world_size) * world_size} or less")
    if o.lr_scale > _LR_SCALE_WARN:
        report(f"warning: batch {o.batch_size} scales the recipe's lr {o.recipe_lr:g} (batch {o.recipe_batch}) "
               f"{o.lr_scale:.0f}x to {o.lr:.3g}; linear scaling is not reliable that far: pass --lr to choose it")


def _claim(cfg: Config, root, num_classes: int, restarted: bool = False):
    """The run's identity and id, and its config (``classify.rundir.claim_run`` refuses a folder
    that holds another run, before anything in it is touched). The same command after a stop
    continues the run it stopped, as ``--resume auto``."""
    ident = identity(data_root=identity_root(cfg.data.kind, root), arch=cfg.arch, recipe=cfg.recipe,
                     num_classes=num_classes, image_size=cfg.data.image_size, global_batch=cfg.optim.batch_size)
    ident, held = claim_run(cfg.output.output_dir, ident, resume=cfg.output.resume, fresh=cfg.output.fresh,
                            epochs=cfg.optim.epochs, writes=not (cfg.output.evaluate or cfg.loop.prof),
                            restarted=restarted)
    if held is not None and held.auto:  # the same command after a stop: continue the run, as --resume auto
        cfg = replace(cfg, output=replace(cfg.output, resume="auto", continued=held.epochs_done))
    return ident, cfg


def _begin(setup: _Setup) -> None:
    """Rank 0, once everything the run starts from is in place: ``--fresh`` moves the old run
    aside, then the folder is created and the run's config (with its identity) written. A run
    that fails before this leaves the output dir, and the run that wrote it, untouched."""
    cfg, reporter = setup.cfg, setup.reporter
    if not setup.info.is_main:
        return
    if cfg.output.fresh and not setup.restarted:  # a restart generation keeps what the first one wrote
        moved = move_aside(cfg.output.output_dir)
        if moved is not None:
            reporter.line(f"=> --fresh: the previous run in '{cfg.output.output_dir}' moved to '{moved}'")
    create_output_dir(cfg.output.output_dir)
    reporter.write_json("config.json", {"identity": setup.identity, **cfg.to_dict()})


def _loader(setup: _Setup, dataset, *, train: bool):
    cfg, info = setup.cfg, setup.info
    return build_loader(dataset, batch_size=cfg.optim.per_device_batch, workers=cfg.data.workers, train=train,
                        rank=info.rank, world_size=info.world_size, seed=cfg.seed,
                        pin_memory=pin_memory(setup.device), device=setup.device,
                        repeats=cfg.levers.ra_reps if cfg.levers.ra_sampler else 0)


def _load_weights(setup: _Setup, model: nn.Module, source: str, *, pretrained: bool) -> None:
    """``--pretrained`` (a file or torchvision's cache) or ``-e --resume`` weights into ``model``."""
    arch = setup.cfg.arch
    state = load_pretrained(source, arch) if pretrained else load_checkpoint(source)
    load_model_weights(model, state, path=source, arch=arch)
    hook = models.get_model_entry(arch).after_pretrained
    if hook is not None:
        hook(model, "torchvision" if state.get("torchvision") else None)


def _start_from_pretrained(cfg: Config, model: nn.Module):
    """Training with ``--pretrained``/``-t``: the weights into ``model``, the net's head left fresh
    when the file's has another class count (or with ``-t``), and then the fine-tuning defaults
    for what no flag set (``classify.resolve.finetune_defaults``). Returns the config and the
    lines that say so."""
    source = cfg.output.pretrained
    if not source or cfg.output.evaluate:
        return cfg, []
    state = load_pretrained(source, cfg.arch)
    shown = torchvision_weights_path(cfg.arch) if source == TORCHVISION else source
    swap = load_model_weights(model, state, path=shown, arch=cfg.arch,
                              head="fresh" if cfg.finetune.fresh_head else "auto")
    hook = models.get_model_entry(cfg.arch).after_pretrained
    if hook is not None:
        hook(model, "torchvision" if state.get("torchvision") else None)
    if swap is None:
        return cfg, [f"=> pretrained weights from {shown}: every layer loaded"]
    cfg, chosen = finetune_defaults(cfg)
    lines = [f"=> pretrained weights from {shown}: every layer loaded except the head {', '.join(swap.names)} "
             f"({swap.old_classes if swap.old_classes is not None else 'none'} -> {swap.new_classes} classes), "
             "which starts fresh"]
    if chosen:
        lines.append(f"=> fine-tuning defaults (for what no flag set): {chosen}")
    return cfg, lines


def _evaluate(setup: _Setup, model: nn.Module, val_loader, stop: Optional[StopRequest] = None) -> Dict:
    """One evaluation: the ` * Acc@1` line, and OUTPUT_DIR/eval/per_class.csv + confusion.csv."""
    stats = evaluate(model, val_loader, device=setup.device, amp=setup.amp, normalize=setup.normalize,
                     on_step=setup.reporter.test_step if setup.info.is_main else None,
                     print_freq=setup.cfg.loop.print_freq,
                     max_bad_fraction=setup.cfg.loop.max_bad_images, stop=stop, tta=setup.cfg.loop.tta,
                     num_classes=setup.num_classes)
    if stats.get("stop_signal"):  # a signal ended it (a stalled read): no figures
        return stats
    confusion = stats.pop("confusion")
    if stats["bad_images"]:
        setup.reporter.line(f"=> validation: skipped {stats['bad_images']} unreadable images")
    setup.reporter.eval_result(stats["acc1"], stats["acc5"])
    if setup.info.is_main:
        write_eval_tables(_eval_dir(setup.cfg.output.output_dir), confusion, setup.classes)
    return stats


def _eval_dir(output_dir) -> Path:
    """Where an evaluation's per_class.csv and confusion.csv go: OUTPUT_DIR/eval/ (beside the
    summary.json of ``-e`` in a training run's folder), or OUTPUT_DIR itself when it is an eval/
    folder already (the launchers' train_eval_*.sh evaluate into test/output/<id>/eval/)."""
    folder = Path(output_dir).expanduser()
    return folder if folder.name == EVAL_DIR else folder / EVAL_DIR


def _evaluate_only(setup: _Setup, model: nn.Module, val_loader) -> Dict:
    out = setup.cfg.output
    if out.resume:
        _load_weights(setup, model, out.resume, pretrained=False)
    elif out.pretrained:
        _load_weights(setup, model, out.pretrained, pretrained=True)
    if held_run(out.output_dir) is not None:  # a training run's folder: its config and summary stay
        setup.reporter.output_dir = Path(out.output_dir) / EVAL_DIR
        setup.reporter.line(f"=> '{out.output_dir}' holds a training run: this evaluation's config.json and "
                            f"summary.json go to '{setup.reporter.output_dir}'")
    if setup.info.is_main:
        create_output_dir(setup.reporter.output_dir)
    setup.reporter.write_json("config.json", setup.cfg.to_dict())
    start = time.perf_counter()
    stats = _evaluate(setup, model, val_loader)
    summary = _summary(setup, _TrainState(Progress(best_acc1=stats["acc1"]), last_eval=stats), train_time=0.0)
    summary["eval_time_s"] = round(time.perf_counter() - start, 3)
    summary["tta"] = setup.cfg.loop.tta
    setup.reporter.summary(summary)
    return summary


@dataclass
class _TrainState:
    progress: Progress
    fps: float = 0.0
    bad_images: int = 0
    last_eval: Dict = field(default_factory=dict)
    last_ema: Dict = field(default_factory=dict)  # --model-ema: the EMA weights' evaluation


def _train(setup: _Setup, model: nn.Module, train_loader, *, val_loader) -> Dict:
    cfg, info, reporter = setup.cfg, setup.info, setup.reporter
    ft = cfg.finetune
    parts = build_train_parts(model, arch=cfg.arch, optim=cfg.optim, steps_per_epoch=len(train_loader),
                              device=setup.device, amp=setup.amp, normalize=setup.normalize,
                              distributed=info.enabled, compile_model=cfg.precision.compile,
                              nan_skips=cfg.loop.nan_skips, levers=cfg.levers, num_classes=setup.num_classes,
                              backbone_lr_scale=1.0 if ft.backbone_lr_scale is None else ft.backbone_lr_scale,
                              freeze_backbone=ft.freeze_backbone)
    note = ema_note(cfg.levers, optim=cfg.optim, steps_per_epoch=len(train_loader))
    if note:
        reporter.line(note)
    if cfg.levers.sync_bn and info.world_size == 1:
        reporter.line("=> --sync-bn: one process, nothing to synchronise; BatchNorm left as it is")
    if cfg.loop.prof:
        return _profile(setup, parts, train_loader)
    objects = TrainingObjects(model, parts.optimizer, parts.scheduler, parts.scaler, ema=parts.ema)
    ckpt = CheckpointManager(cfg.output.output_dir, is_main=info.is_main, keep=cfg.output.keep_checkpoints,
                             every=cfg.output.checkpoint_freq, restarted=setup.restarted,
                             run_info={"arch": cfg.arch, "recipe": cfg.recipe, "args": cfg.flat(),
                                       "classes": setup.classes, "identity": setup.identity})
    state = _TrainState(ckpt.resume(_resume_flag(setup, ckpt), objects, arch=cfg.arch, rank=info.rank,
                                    world_size=info.world_size, log=reporter.line)
                        or Progress(epoch=cfg.optim.start_epoch))
    _begin(setup)
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
    return None if setup.cfg.output.fresh and resume == "auto" else resume  # --fresh: the run starts over


def _profile(setup: _Setup, parts: TrainParts, train_loader) -> Dict:
    from .profiling import profile_training

    if setup.info.is_main:
        create_output_dir(setup.cfg.output.output_dir)
    train_loader.sampler.set_epoch(0)
    return profile_training(parts, train_loader, out_dir=setup.cfg.output.output_dir, report=setup.reporter.line)


def _epochs(setup: _Setup, parts: TrainParts, ckpt: CheckpointManager, *, objects: TrainingObjects, train_loader,
            val_loader, state: _TrainState, stop: StopRequest) -> None:
    cfg, progress = setup.cfg, state.progress
    steps_per_epoch, steps_left = len(train_loader), cfg.loop.stop_step_num

    def after_step(step: int) -> None:  # after each optimizer step
        last, progress.step = progress.step, step
        interval = cfg.output.ckpt_interval
        # the first optimizer step at or past each multiple (with accumulation, steps come in groups)
        if interval and step // interval > last // interval and step < steps_per_epoch:
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
        _progressive_size(setup, parts, epoch)
        stats = train_one_epoch(parts, train_loader, plan, setup.reporter.step, log=setup.reporter.line, stop=stop,
                                after_step=after_step)
        stats["train_size"] = parts.train_size
        if stats["stop_signal"]:
            ckpt.save(objects, progress)
            raise Interrupted(f"stopped by {signal.Signals(stats['stop_signal']).name} at epoch {epoch} step "
                              f"{progress.step}; checkpoint saved to {ckpt.latest_path}; continue with "
                              "--resume auto", stats["stop_signal"])
        if steps_left is not None:
            steps_left -= stats["steps"]
        last = epoch == cfg.optim.epochs - 1 or (steps_left is not None and steps_left <= 0)
        _end_epoch(setup, ckpt, objects, state=state, stats=stats, val_loader=val_loader, last=last, stop=stop)
        if last:
            break


def _progressive_size(setup: _Setup, parts: TrainParts, epoch: int) -> None:
    """``--progressive-resize``: this epoch's train resolution (a function of the epoch alone, so
    a resumed run trains each epoch at the size an uninterrupted one does)."""
    prog = setup.cfg.levers.progressive_resize
    if prog is None:
        return
    start, end, first, last = prog
    parts.train_size = progressive_size(epoch, start=start, end=end, from_epoch=first, to_epoch=last)
    setup.reporter.line(f"[epoch {epoch}] train size {parts.train_size} (--progressive-resize {start}:{end}:"
                        f"{first}:{last})")


def _end_epoch(setup: _Setup, ckpt: CheckpointManager, objects: TrainingObjects, *, state: _TrainState,
               stats: Dict, val_loader, last: bool = True, stop: Optional[StopRequest] = None) -> None:
    """FPS line, evaluation (every --eval-freq epochs and after the ``last``), checkpoints (best: the
    first evaluation, then any better Acc@1), record."""
    epoch, reporter, progress = state.progress.epoch, setup.reporter, state.progress
    if stats["steps"]:  # none: resumed after a stop at the epoch's last step, only its end was left
        state.fps = stats["fps"]
        reporter.fps(epoch, state.fps)
    state.bad_images += int(stats["bad_images"])
    if stats["bad_images"]:
        reporter.line(f"[epoch {epoch}] skipped {int(stats['bad_images'])} unreadable images")
    every = setup.cfg.loop.eval_freq
    evaluated = val_loader is not None and (last or (epoch + 1) % every == 0)
    if evaluated:
        if objects.ema is not None:  # first, so that the last Acc@1 line is the weights' (seed pipelines)
            state.last_ema = _evaluate_ema(setup, objects.ema.module, val_loader, stop)
            _stopped_in_eval(ckpt, objects, progress, state.last_ema)
        model = objects.model  # the bare module (DDP's forward would be a collective per batch)
        broadcast_buffers(model)  # evaluate with the BN statistics the checkpoint holds (rank 0's)
        state.last_eval = _evaluate(setup, model, val_loader, stop)
        _stopped_in_eval(ckpt, objects, progress, state.last_eval)
    is_best = evaluated and _track_best(progress, state.last_eval.get("acc1"), state.last_ema.get("acc1"))
    progress.epoch, progress.step = epoch + 1, 0
    ckpt.save(objects, progress, is_best=is_best, finished_epoch=epoch)
    reporter.epoch_record(epoch, lr=objects.optimizer.param_groups[0]["lr"], train=stats,
                          val=state.last_eval if evaluated else {}, ema=(state.last_ema or None) if evaluated else None,
                          train_size=stats.get("train_size"))


def _stopped_in_eval(ckpt: CheckpointManager, objects: TrainingObjects, progress: Progress, stats: Dict) -> None:
    """A signal ended the evaluation (while it waited for data): save the epoch as trained but not
    yet evaluated (a resume evaluates it) and stop, as a stop in training does."""
    if not stats.get("stop_signal"):
        return
    ckpt.save(objects, progress)
    raise Interrupted(f"stopped by {signal.Signals(stats['stop_signal']).name} at epoch {progress.epoch} step "
                      f"{progress.step}; checkpoint saved to {ckpt.latest_path}; continue with --resume auto",
                      stats["stop_signal"])


def _evaluate_ema(setup: _Setup, ema_model: nn.Module, val_loader, stop: Optional[StopRequest] = None) -> Dict:
    """The EMA weights on the validation set, on their own line (` * EMA Acc@1 ...`)."""
    broadcast_buffers(ema_model)  # the EMA of BN statistics differs per rank: rank 0's, as saved
    stats = evaluate(ema_model, val_loader, device=setup.device, amp=setup.amp, normalize=setup.normalize,
                     max_bad_fraction=setup.cfg.loop.max_bad_images, stop=stop, tta=setup.cfg.loop.tta)
    if stats.get("stop_signal"):
        return stats
    setup.reporter.eval_result(stats["acc1"], stats["acc5"], label="EMA ")
    return stats


def _track_best(progress: Progress, acc1, ema_acc1) -> bool:
    """Best = the first evaluation, then any better Acc@1 of the weights or (--model-ema) of
    their EMA, whichever is higher; ``best_is_ema`` says which."""
    candidates = [(a, is_ema) for a, is_ema in ((acc1, False), (ema_acc1, True)) if a is not None]
    if not candidates:
        return False
    best, is_ema = max(candidates, key=lambda c: (c[0], not c[1]))  # a tie goes to the weights
    if progress.best_acc1 is not None and best <= progress.best_acc1:
        return False
    progress.best_acc1, progress.best_is_ema = best, is_ema
    return True


def _summary(setup: _Setup, state: _TrainState, *, train_time: float) -> Dict:
    cfg = setup.cfg
    return run_summary(arch=cfg.arch, recipe=cfg.recipe, epochs=state.progress.epoch,
                       world_size=setup.info.world_size, global_batch_size=cfg.optim.batch_size,
                       best_acc1=state.progress.best_acc1, last_eval=state.last_eval, fps=state.fps,
                       train_time=train_time, device=setup.device, amp=setup.amp.name, bad_images=state.bad_images,
                       last_ema=state.last_ema or None, best_is_ema=state.progress.best_is_ema,
                       step_lines=setup.reporter.step_lines())
