"""The run's ``Config``, resolved once at the boundary from flags + recipe (+ demo profile) + data.

Order of precedence: a flag given on the command line > the demo profile (only when no
data path is given) > the recipe > built-in defaults. Every value check is here, each a
one-line ``UserError``. Engine code receives the resolved ``Config`` (``classify.schema``)
fields as plain arguments, never the argparse namespace: this is the one module that reads it.
"""

import argparse
import math
import os
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import Optional, Tuple

import models
from models.recipe import Recipe

from .cli import OPTIMIZERS, finite_float, parse_int_list
from .data import BACKENDS
from .devices import cpu_count, resolve_kind
from .errors import UserError
from .schedules import SCHEDULES, TORCHVISION_SCHEDULES, WARMUP_METHODS
from .schema import (BACKBONE_LR_SCALE, FINETUNE_EPOCHS, OPT_LEVELS, TTA_MODES, Config, DataConfig,
                     FineTuneConfig, LeverConfig, LoopConfig, OptimConfig, OutputConfig, PrecisionConfig, Sources)
from .transforms import AUTO_AUGMENT, RRC_RATIO, RRC_SCALE

__all__ = ["build_config", "finetune_defaults"]


def _pick(cli, *fallbacks):
    """The first value that is not None: the flag, then the fallbacks in order."""
    for value in (cli, *fallbacks):
        if value is not None:
            return value
    return None


def _resolve_recipe(args) -> Tuple[str, Recipe]:
    arch = args.arch
    if arch is not None and arch not in models.list_models():
        raise UserError(f"unknown arch '{arch}'; choose one of {', '.join(models.list_models())}")
    name = args.recipe or models.default_recipe(arch or models.DEFAULT_ARCH)
    if name not in models.list_recipes():
        raise UserError(f"unknown recipe '{name}'; choose one of {', '.join(models.list_recipes())}")
    recipe = models.get_recipe(name)
    if arch is not None and recipe.arch != arch:
        raise UserError(f"recipe '{name}' is for {recipe.arch}, not {arch}; drop --recipe or pick "
                        f"{models.default_recipe(arch)}")
    return recipe.arch, recipe


def _label_smoothing(args, recipe: Recipe) -> float:
    if args.label_smooth is not None and args.label_smooth not in (0, 1):
        raise UserError(f"--label_smooth must be 0 or 1, got {args.label_smooth}")
    if args.label_smooth == 0:
        return 0.0
    value = _pick(args.label_smoothing, recipe.label_smoothing or (0.1 if args.label_smooth == 1 else 0.0))
    if not 0.0 <= value < 1.0:
        raise UserError(f"--label-smoothing must be in [0, 1), got {value}")
    return value


def _batch(args, recipe: Recipe, demo: dict, *, world_size: int, local_world: int) -> Tuple[int, int]:
    """(global batch over all processes, per-device batch)."""
    if args.per_batch_size is not None:
        per_device = args.per_batch_size
    elif args.batch_size is not None:  # pytorch/examples: -b is the node's batch, split over its devices
        if args.batch_size % local_world:
            raise UserError(f"--batch-size {args.batch_size} does not divide over {local_world} devices; "
                            f"use a multiple of {local_world} or --per_batch_size")
        per_device = args.batch_size // local_world
    elif "batch_size" in demo:
        per_device = max(1, demo["batch_size"] // world_size)
    else:
        per_device = recipe.global_batch(world_size) // world_size
    if per_device < 1:
        flag, given = (("--per_batch_size", args.per_batch_size) if args.per_batch_size is not None
                       else ("-b/--batch-size", args.batch_size))
        raise UserError(f"{flag} {given} leaves less than 1 image per device ({local_world} device"
                        f"{'s' * (local_world != 1)}); use {flag.split('/')[0]} "
                        f"{1 if flag == '--per_batch_size' else local_world} or more")
    return per_device * world_size, per_device


def _recipe_lr(args, recipe: Recipe, demo: dict, *, world_size: int, global_batch: int, accum: int = 1,
               fitted: bool = False) -> float:
    """The recipe's lr; when the batch was changed by a flag or by the demo profile, scaled
    linearly to that batch (Goyal et al., 2017) so that a small CPU batch does not diverge
    with an lr made for hundreds of images. With gradient accumulation, the batch of one
    optimizer step (global batch x ``accum``) is the one that counts."""
    base = recipe.lr(world_size)
    if (accum == 1 and not fitted and args.batch_size is None and args.per_batch_size is None
            and "batch_size" not in demo):
        return base
    return base * global_batch * accum / recipe.global_batch(world_size)


def _check_positive(name: str, value, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _data_source(args) -> Tuple[Optional[str], str]:
    if args.data and args.data_opt and os.path.abspath(args.data) != os.path.abspath(args.data_opt):
        raise UserError(f"two data paths given ('{args.data}' and '{args.data_opt}'); pass one")
    data = args.data or args.data_opt
    backend = args.data_backend
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"unknown --data-backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if args.dummy and backend not in (None, "dummy"):
        raise UserError(f"--dummy and --data-backend {backend} contradict each other; drop one")
    if args.dummy or backend == "dummy":  # a data path is ignored, as in pytorch/examples
        return None, "dummy"
    if data is None:
        return None, "demo"
    return data, "folder"


def build_config(args: argparse.Namespace, world_size: int = 1, local_world: int = 1) -> Config:
    """Resolve flags + recipe into a ``Config``. Raises ``UserError`` for bad values."""
    arch, recipe = _resolve_recipe(args)
    _check_numbers(args)
    _check_torchvision_noops(args)
    data, kind = _data_source(args)
    demo = _demo_profile(arch) if kind == "demo" else {}
    args = recipe_lever_args(args, recipe, demo=demo)  # the recipe's levers (the fast recipes'), flags win
    fit = _fit_to_data(args, arch, recipe, demo, path=data, kind=kind, world_size=world_size)
    optim = _optim_config(args, recipe, demo, world_size=world_size, local_world=local_world, fit=fit)
    return Config(
        arch=arch, recipe=recipe.name, seed=_pick(args.seed, recipe.seed),
        device=args.device, device_id=_device_id(args.device_id, args.device_list),
        world_size=world_size, dist_backend=args.dist_backend,
        data=_data_config(args, arch, recipe, demo=demo, path=data, kind=kind, local_world=local_world, fit=fit),
        optim=optim, precision=_precision_config(args, recipe),
        loop=LoopConfig(print_freq=_pick(args.print_freq, _perf_print_freq(args, arch), 10),
                        stop_step_num=args.stop_step_num,
                        max_bad_images=_fraction(args.max_bad_images), nan_skips=_nan_skips(args.nan_policy),
                        prof=bool(args.prof), tensorboard=_tensorboard(args.tensorboard),
                        eval_freq=getattr(args, "eval_freq", None) or 1,
                        log_format=getattr(args, "log_format", "examples"), tta=_tta(args)),
        output=OutputConfig(output_dir=Path(args.output_dir or ".").expanduser(),
                            ckpt_interval=args.ckpt_interval or 0, keep_checkpoints=args.keep_checkpoints or 0,
                            checkpoint_freq=getattr(args, "checkpoint_freq", None) or 0,
                            resume=args.resume or None, evaluate=bool(args.evaluate),  # torchvision: ""
                            pretrained=_pretrained(args, arch),
                            fresh=_fresh(args), force_output_dir=bool(getattr(args, "force_output_dir", False))),
        model_kwargs=_model_kwargs(args, arch, recipe), argv=tuple(sys.argv),
        levers=_lever_config(args, global_batch=optim.batch_size, world_size=world_size,
                             warmup_epochs=optim.warmup_epochs, epochs=optim.epochs,
                             min_size=models.min_image_size(arch), scheduler=optim.lr_scheduler),
        finetune=_finetune_config(args, demo),
        sources=_sources(args, demo, fit, optim),
    )


def _fresh(args) -> bool:
    """``--fresh`` starts over: with ``--resume auto`` (the launcher's) nothing is resumed; with
    a checkpoint path it contradicts itself."""
    fresh = bool(getattr(args, "fresh", False))
    if fresh and args.resume not in (None, "", "auto"):
        raise UserError(f"--fresh starts over, --resume {args.resume} continues; drop one (to start from its "
                        f"weights: --pretrained {args.resume})")
    return fresh


def _check_numbers(args) -> None:
    for name in ("lr", "epochs", "momentum", "workers", "print_freq", "image_size", "val_resize", "lr_gamma"):
        _check_positive(f"--{name.replace('_', '-')}", getattr(args, name),
                        allow_zero=name in ("momentum", "workers"))
    for name in ("weight_decay", "warmup_epochs", "ckpt_interval", "start_epoch", "keep_checkpoints"):
        _check_positive(f"--{name.replace('_', '-')}", getattr(args, name), allow_zero=True)
    for name in ("lr_step_size", "eval_freq"):  # the seeds' flags (add_seed_flags)
        _check_positive(f"--{name.replace('_', '-')}", getattr(args, name, None))
    _check_positive("--checkpoint-freq", getattr(args, "checkpoint_freq", None), allow_zero=True)
    _check_positive("--stop-step-num", args.stop_step_num)
    _check_positive("--num-classes", args.num_classes)


def _demo_profile(arch: str) -> dict:
    """The demo set's short schedule, with an image size the net accepts."""
    from .data.demo import DEMO_PROFILE

    demo = dict(DEMO_PROFILE)
    demo["image_size"] = max(demo["image_size"], models.min_image_size(arch))
    demo["val_resize"] = max(demo["val_resize"], round(demo["image_size"] * 8 / 7))
    return demo


def _data_config(args, arch: str, recipe: Recipe, *, demo: dict, path: Optional[str], kind: str,
                 local_world: int, fit: Optional["_Fit"] = None) -> DataConfig:
    fit = fit or _Fit()
    image_size = _pick(args.image_size, demo.get("image_size"), fit.image_size, recipe.image_size)
    if image_size < models.min_image_size(arch):
        raise UserError(f"--image-size {image_size} is too small for {arch}; "
                        f"use at least {models.min_image_size(arch)}")
    val_crop = _val_crop(args, arch, image_size)
    val_resize = _pick(args.val_resize, demo.get("val_resize") if args.image_size is None and val_crop == image_size
                       else None, round(val_crop * recipe.val_resize / recipe.image_size))
    if val_resize < val_crop:
        crop_flag = "--val-crop-size" if val_crop != image_size else "--image-size"
        raise UserError(f"--val-resize {val_resize} is smaller than {crop_flag} {val_crop}; "
                        f"the center crop needs val-resize >= {crop_flag[2:]}")
    return DataConfig(
        path=path, kind=kind, backend="gpu" if args.data_backend == "gpu" else "pil",
        image_size=image_size, val_resize=val_resize, val_crop_size=val_crop, mean=recipe.mean, std=recipe.std,
        color_jitter=recipe.color_jitter,
        workers=_pick(args.workers, demo.get("workers"), _default_workers(local_world)),
        num_classes=args.num_classes, no_val=bool(args.no_val), dummy_sizes=_dummy_sizes(args.dummy_size),
        index_cache=_index_cache(args), data_timeout=_data_timeout(getattr(args, "data_timeout", None)),
        **_crop_ranges(args, fit))


def _data_timeout(value: Optional[float]) -> float:
    if value is None:
        return DataConfig.data_timeout
    if value < 0:
        raise UserError(f"--data-timeout must be >= 0 seconds (0: no limit), got {value:g}")
    return value


def _index_cache(args) -> Optional[str]:
    """``--index-cache DIR`` / ``--no-index-cache``; ``--cache-dataset`` (torchvision's
    references) asks for the cache, which is on by default."""
    if getattr(args, "no_index_cache", False):
        if getattr(args, "index_cache", None) or getattr(args, "cache_dataset", False):
            raise UserError("--no-index-cache contradicts --index-cache/--cache-dataset; drop one")
        return None
    from .data.index import default_index_cache

    return str(Path(getattr(args, "index_cache", None) or default_index_cache()).expanduser())


def _optim_config(args, recipe: Recipe, demo: dict, *, world_size: int, local_world: int,
                  fit: Optional["_Fit"] = None) -> OptimConfig:
    global_batch, per_device = _batch(args, recipe, demo, world_size=world_size, local_world=local_world)
    if fit is not None and fit.per_device_batch is not None:  # the recipe's batch, shrunk to fit the data
        global_batch, per_device = fit.per_device_batch * world_size, fit.per_device_batch
    step_size = getattr(args, "lr_step_size", None)  # torchvision references' StepLR period
    scheduler = _pick(args.lr_scheduler and args.lr_scheduler.lower(), "step" if step_size else None,
                      recipe.lr_scheduler)
    if scheduler not in SCHEDULES:
        raise UserError(f"unknown --lr-scheduler '{scheduler}'; choose one of {', '.join(SCHEDULES)}")
    recipe_lr = _recipe_lr(args, recipe, demo, world_size=world_size, global_batch=global_batch,
                           accum=_accum_steps(args, global_batch),
                           fitted=fit is not None and fit.per_device_batch is not None)
    return OptimConfig(
        lr_scale=1.0 if args.lr is not None else recipe_lr / recipe.lr(world_size),
        recipe_lr=recipe.lr(world_size), recipe_batch=recipe.global_batch(world_size),
        epochs=_pick(args.epochs, demo.get("epochs"), recipe.epochs), start_epoch=args.start_epoch or 0,
        batch_size=global_batch, per_device_batch=per_device,
        lr=_pick(args.lr, recipe_lr),
        momentum=_pick(args.momentum, recipe.momentum), weight_decay=_pick(args.weight_decay, recipe.weight_decay),
        label_smoothing=_label_smoothing(args, recipe), lr_scheduler=scheduler,
        lr_epochs=_pick(args.lr_epochs, () if step_size else None, recipe.lr_epochs),
        lr_step=_pick(step_size, recipe.lr_step),
        lr_gamma=_pick(args.lr_gamma, recipe.lr_gamma),
        warmup_epochs=_pick(args.warmup_epochs, recipe.warmup_epochs), **_torchvision_optim(args))


def _torchvision_optim(args) -> dict:
    """torchvision references' ``--opt`` and ``--lr-min`` (``classify.optim``, ``classify.schedules``)."""
    opt, lr_min = (getattr(args, "opt", None) or "sgd").lower(), _pick(getattr(args, "lr_min", None), 0.0)
    if opt not in OPTIMIZERS:
        raise UserError(f"unknown --opt '{opt}'; choose one of {', '.join(OPTIMIZERS)}")
    if opt == "sgd_nesterov" and args.momentum == 0:
        raise UserError("--opt sgd_nesterov needs a momentum > 0; drop --momentum 0 or use --opt sgd")
    if lr_min < 0 or (args.lr is not None and lr_min > args.lr):
        raise UserError(f"--lr-min must be in [0, --lr], got {lr_min}")
    return dict(opt=opt, lr_min=lr_min)


def _pretrained(args, arch: str) -> Optional[str]:
    """``--pretrained [PATH]``, or torchvision references' ``--weights NAME``: a name of the arch's
    torchvision weights enum (``IMAGENET1K_V1``, ``DEFAULT``, ``VGG16_Weights.IMAGENET1K_V1``) that
    is the weights a bare ``--pretrained`` loads (torchvision's DEFAULT, from the local cache)."""
    name = getattr(args, "weights", None)
    if name is None:  # -t alone starts from torchvision's weights (a bare --pretrained)
        return args.pretrained or ("torchvision" if getattr(args, "fine_tuning", False) else None)
    if args.pretrained is not None:
        raise UserError(f"--weights {name} and --pretrained both name weights; pass one")
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(arch)
    except (ValueError, KeyError):
        raise UserError(f"torchvision ships no weights for {arch}; pass the weights file: --pretrained PATH") from None
    member = name.split(".")[-1]
    known = [w.name for w in enum]
    if member != "DEFAULT" and member not in known:
        raise UserError(f"unknown --weights '{name}' for {arch}; choose one of {', '.join(['DEFAULT', *known])}")
    if member != "DEFAULT" and enum[member] != enum.DEFAULT:
        raise UserError(f"--weights {name}: only {enum.DEFAULT.name} (DEFAULT) of {arch} loads here; for other "
                        f"weights pass the file: --pretrained PATH")
    return "torchvision"


def _check_torchvision_noops(args) -> None:
    """torchvision references' flags with one meaning here: the others are refused in one line."""
    interpolation, backend = getattr(args, "interpolation", None), getattr(args, "backend", None)
    if interpolation is not None and interpolation.lower() != "bilinear":
        raise UserError(f"--interpolation {interpolation}: images are resized bilinearly here (torchvision's "
                        "default) and no other mode is offered; drop the flag")
    if backend is not None and backend.lower() not in ("pil", "tensor"):
        raise UserError(f"unknown --backend '{backend}'; torchvision's are pil and tensor (both accepted, no "
                        "effect here: --data-backend gpu decodes on the device)")


def _precision_config(args, recipe: Recipe) -> PrecisionConfig:
    opt_level = args.opt_level.upper() if args.opt_level else None
    if opt_level is not None and opt_level not in OPT_LEVELS:
        raise UserError(f"unknown --opt-level '{args.opt_level}'; use O0, O1, O2 or O3")
    return PrecisionConfig(amp=bool(args.amp), opt_level=opt_level, recipe_opt_level=recipe.opt_level,
                           loss_scale=_loss_scale(args.loss_scale, recipe), amp_dtype=args.amp_dtype,
                           channels_last=args.channels_last, compile=bool(args.compile),
                           benchmark=bool(args.benchmark))


def _model_kwargs(args, arch: str, recipe: Recipe) -> dict:
    """The recipe's build kwargs plus the options flags switched on (each one the net offers)."""
    kwargs = dict(recipe.model_kwargs)
    offered = models.get_model_entry(arch).train_options
    for option in getattr(args, "model_options", None) or ():
        if option not in offered:
            offers = f" (its options: {', '.join(offered)})" if offered else ""
            raise UserError(f"--{option.replace('_', '-')} is not an option of {arch}{offers}; drop the flag")
        kwargs[option] = True
    return kwargs


def _device_id(device_id: Optional[int], device_list: Optional[str]) -> Optional[int]:
    """``--device-id``, or the one id of a one-item ``--device-list`` (several: main_8p.py's)."""
    if device_id is not None or not device_list:
        return device_id
    try:
        ids = parse_int_list(device_list)
    except argparse.ArgumentTypeError:
        ids = ()
    if not ids or min(ids) < 0:
        raise UserError(f"--device-list '{device_list}' is not a comma-separated list of device ids")
    return ids[0] if len(ids) == 1 else None


def _loss_scale(value: Optional[str], recipe: Recipe) -> Optional[float]:
    if value is None:
        return recipe.loss_scale
    if str(value).lower() == "dynamic":
        return None
    try:
        scale = finite_float(value)
    except argparse.ArgumentTypeError:
        raise UserError(f"--loss-scale must be a number or 'dynamic', got '{value}'") from None
    if scale <= 0:
        raise UserError(f"--loss-scale must be > 0, got {value}")
    return scale


def _tensorboard(asked: bool) -> bool:
    if asked:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package; pip install tensorboard") from None
    return asked


def _fraction(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise UserError(f"--max-bad-images is a fraction of the dataset in [0, 1], got {value}")
    return value


def _nan_skips(policy: str) -> int:
    """``stop`` -> 0 skipped steps; ``skip`` -> 10; ``skip:N`` -> N."""
    name, _, count = policy.partition(":")
    if name == "stop" and not count:
        return 0
    if name == "skip":
        try:
            n = int(count) if count else 10
        except ValueError:
            n = -1
        if n >= 0:
            return n
    raise UserError(f"--nan-policy must be 'stop', 'skip' or 'skip:N', got '{policy}'")


def _dummy_sizes(value: Optional[Tuple[int, ...]]) -> Tuple[int, int]:
    if not value:
        return (1281167, 50000)
    if len(value) != 2 or min(value) < 1:
        raise UserError(f"--dummy-size takes TRAIN,VAL image counts, e.g. 1024,256; got {value}")
    return value


def _default_workers(local_world: int) -> int:
    """This machine's CPUs shared by its processes, at most 8 each (pytorch/examples uses 4)."""
    cpus = cpu_count()
    return max(1, min(8, cpus // max(local_world, 1)))


def _val_crop(args, arch: str, image_size: int) -> int:
    """``--val-crop-size`` (torchvision): the val centre crop, by default the train crop; larger
    than the train crop it tests at a higher resolution (the FixRes effect)."""
    crop = getattr(args, "val_crop_size", None)
    if crop is None:
        return image_size
    if crop < models.min_image_size(arch):
        raise UserError(f"--val-crop-size {crop} is too small for {arch}; use at least {models.min_image_size(arch)}")
    return crop


def _lever_config(args, *, global_batch: int, world_size: int = 1, warmup_epochs: float = 0.0,
                  epochs: int = 1, min_size: int = 1, scheduler: str = "") -> LeverConfig:
    get = lambda name: getattr(args, name, None)  # noqa: E731  (parsers without the lever flags)
    _check_positive("--clip-grad-norm", get("clip_grad_norm"))
    return LeverConfig(grad_accum_steps=_accum_steps(args, global_batch), clip_grad_norm=get("clip_grad_norm"),
                       **_ema_levers(get), **_mix_levers(get), **_decay_levers(get),
                       sync_bn=_sync_bn(bool(get("sync_bn")), device=args.device, world_size=world_size),
                       deterministic=bool(get("deterministic")),
                       **_warmup_levers(get, warmup_epochs, torchvision=scheduler in TORCHVISION_SCHEDULES),
                       **_augment_levers(get), **_ra_levers(get),
                       progressive_resize=_progressive(get("progressive_resize"), epochs=epochs, min_size=min_size),
                       **_fast_levers(get))


def _progressive(text: Optional[str], *, epochs: int, min_size: int) -> Optional[Tuple[int, int, int, int]]:
    """``START:END[:FROM_EPOCH:TO_EPOCH]``; without the epochs the ramp spans the run."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(":")]
    except ValueError:
        values = []
    if len(values) not in (2, 4) or min(values) < 0:
        raise UserError(f"--progressive-resize takes START:END or START:END:FROM_EPOCH:TO_EPOCH (integers), "
                        f"e.g. 160:192 or 160:192:10:80; got '{text}'")
    start, end, first, last = values if len(values) == 4 else (*values, 0, max(epochs - 1, 0))
    if min(start, end) < min_size:
        raise UserError(f"--progressive-resize sizes must be at least {min_size} for this net; got '{text}'")
    if last < first:
        raise UserError(f"--progressive-resize: TO_EPOCH {last} is before FROM_EPOCH {first}")
    return start, end, first, last


def _ra_levers(get) -> dict:
    on, reps, timm = bool(get("ra_sampler")), get("ra_reps"), get("aug_repeats")
    if timm is not None:  # timm's --aug-repeats R: on when R > 0
        if reps is not None and reps != timm:
            raise UserError(f"--ra-reps {reps} and --aug-repeats {timm} disagree; pass one of them")
        on, reps = on or timm > 0, timm if timm > 0 else reps
    if reps is not None and not on:
        raise UserError("--ra-reps needs --ra-sampler; add it")
    reps = _pick(reps, 3)
    if on and reps < 2:
        raise UserError(f"--ra-reps must be >= 2 (1 repetition is the plain sampler), got {reps}")
    return dict(ra_sampler=on, ra_reps=reps)


def _augment_levers(get) -> dict:
    policy, erase = get("auto_augment"), _pick(get("random_erase"), 0.0)
    if policy is not None and policy not in AUTO_AUGMENT:
        hint = " (timm's policy strings are not parsed: e.g. rand-m9-... is --auto-augment ra --ra-magnitude 9)"
        raise UserError(f"unknown --auto-augment '{policy}'; choose one of {', '.join(AUTO_AUGMENT)}"
                        f"{hint if '-' in policy else ''}")
    if not 0.0 <= erase <= 1.0:
        raise UserError(f"--random-erase is a probability in [0, 1], got {erase}")
    magnitude, severity = _pick(get("ra_magnitude"), 9), _pick(get("augmix_severity"), 3)
    if not 0 <= magnitude <= 30:  # RandAugment's num_magnitude_bins is 31
        raise UserError(f"--ra-magnitude must be in 0..30, got {magnitude}")
    if not 1 <= severity <= 10:
        raise UserError(f"--augmix-severity must be in 1..10, got {severity}")
    return dict(auto_augment=policy, ra_magnitude=magnitude, augmix_severity=severity, random_erase=erase)


def _warmup_levers(get, warmup_epochs: float, *, torchvision: bool = False) -> dict:
    """``--lr-warmup-method/--lr-warmup-decay``; with torchvision's scheduler names the decay defaults
    and method default to theirs (constant at 0.01 x lr; linear from 0.01 x lr), else the seeds' linear
    warm-up from ~0."""
    method, decay = get("lr_warmup_method"), get("lr_warmup_decay")
    if decay is None and torchvision and warmup_epochs:
        decay = 0.01
    if method is not None and method not in WARMUP_METHODS:
        raise UserError(f"unknown --lr-warmup-method '{method}'; choose one of {', '.join(WARMUP_METHODS)}")
    if decay is not None and not 0.0 < decay <= 1.0:
        raise UserError(f"--lr-warmup-decay is a factor in (0, 1], got {decay}")
    if (method is not None or decay is not None) and not warmup_epochs:
        raise UserError("--lr-warmup-method/--lr-warmup-decay need a warm-up; add --lr-warmup-epochs E")
    return dict(lr_warmup_method=method or ("constant" if torchvision else "linear"), lr_warmup_decay=decay)


def _sync_bn(asked: bool, *, device: str, world_size: int) -> bool:
    if asked and world_size > 1 and resolve_kind(device) == "cpu":
        raise UserError("--sync-bn has no CPU kernel in torch (SyncBatchNorm synchronises cuda/npu tensors only); "
                        "drop --sync-bn for gloo processes on cpu")
    return asked


def _decay_levers(get) -> dict:
    for name in ("norm_weight_decay", "bias_weight_decay"):
        _check_positive(f"--{name.replace('_', '-')}", get(name), allow_zero=True)
    return dict(norm_weight_decay=get("norm_weight_decay"), bias_weight_decay=get("bias_weight_decay"))


def _mix_levers(get) -> dict:
    mixup, cutmix, switch = _pick(get("mixup_alpha"), 0.0), _pick(get("cutmix_alpha"), 0.0), get("mixup_switch_prob")
    _check_positive("--mixup-alpha", mixup, allow_zero=True)
    _check_positive("--cutmix-alpha", cutmix, allow_zero=True)
    if switch is not None and not 0.0 <= switch <= 1.0:
        raise UserError(f"--mixup-switch-prob is a probability in [0, 1], got {switch}")
    return dict(mixup_alpha=mixup, cutmix_alpha=cutmix, mixup_switch_prob=_pick(switch, 0.5))


def _ema_levers(get) -> dict:
    decay, steps = _pick(get("model_ema_decay"), 0.99998), _pick(get("model_ema_steps"), 32)
    if not 0.0 <= decay < 1.0:
        raise UserError(f"--model-ema-decay must be in [0, 1), got {decay}")
    _check_positive("--model-ema-steps", steps)
    on = bool(get("model_ema"))
    if not on and (get("model_ema_decay") is not None or get("model_ema_steps") is not None or get("model_ema_warmup")):
        raise UserError("--model-ema-decay/--model-ema-steps/--model-ema-warmup need --model-ema; add it")
    return dict(model_ema=on, model_ema_decay=decay, model_ema_steps=steps,
                model_ema_warmup=bool(get("model_ema_warmup")))


def _accum_steps(args, global_batch: int) -> int:
    """``--grad-accum-steps N``, or ``--optimizer-batch-size B`` = N x the global batch."""
    steps, target = getattr(args, "grad_accum_steps", None), getattr(args, "optimizer_batch_size", None)
    if steps is not None and steps < 1:
        raise UserError(f"--grad-accum-steps must be >= 1, got {steps}")
    if target is None:
        return steps or 1
    if target < global_batch or target % global_batch:
        raise UserError(f"--optimizer-batch-size {target} is not a multiple of the global batch {global_batch} "
                        "(batch per device x devices); pass a multiple of it or change -b")
    if steps is not None and steps != target // global_batch:
        raise UserError(f"--grad-accum-steps {steps} and --optimizer-batch-size {target} disagree (global batch "
                        f"{global_batch}); pass one of them")
    return target // global_batch


# ----------------------------------------------------------------------------- time to accuracy (issue #24)
# Anti-aliased downsampling (--blurpool), the fast recipes' relative levers
# (models.recipe.FAST_LEVERS) and the seeds' performance print interval. --tta is
# main's (LoopConfig.tta, _tta below); a fast recipe's ``tta`` lever is its default.

def _fast_levers(get) -> dict:
    return dict(blurpool=bool(get("blurpool")))


def recipe_lever_args(args, recipe: Recipe, *, demo: Optional[dict] = None) -> argparse.Namespace:
    """``args`` with the lever flags not given on the command line taken from ``recipe.levers``;
    sizes and epochs relative to this run's image size and epoch budget (models.recipe.FAST_LEVERS):
    ``progressive_resize`` (start, end as fractions of the image size; from, to as fractions of the
    epochs; the start no lower than ``progressive_min_size`` px, nor than the end), ``val_crop_ratio``
    (-> --val-crop-size), ``warmup_fraction`` (-> --warmup-epochs)."""
    levers = dict(recipe.levers)
    if not levers:
        return args
    demo = demo or {}
    out = argparse.Namespace(**vars(args))
    size = _pick(args.image_size, demo.get("image_size"), recipe.image_size)
    epochs = _pick(args.epochs, demo.get("epochs"), recipe.epochs)
    min_size = models.min_image_size(recipe.arch)
    prog, floor = levers.pop("progressive_resize", None), levers.pop("progressive_min_size", 0)
    if prog is not None:
        start, end, first, last = prog
        first, last = math.floor(first * (epochs - 1)), math.ceil(last * (epochs - 1))  # a short run still ends at S
        end = max(round(end * size), min_size)
        start = min(max(round(start * size), min_size, floor), end)
        if start < end:  # else the run trains at its size throughout (small images)
            levers["progressive_resize"] = f"{start}:{end}:{first}:{last}"
    ratio = levers.pop("val_crop_ratio", None)
    if ratio is not None:
        levers["val_crop_size"] = max(round(ratio * size), min_size)
    fraction = levers.pop("warmup_fraction", None)
    if fraction is not None:
        levers["warmup_epochs"] = fraction * epochs
    for name, value in levers.items():
        given = getattr(out, name, None)
        if given is None or given is False:  # not given (store_true flags default to False; 0 is a value)
            setattr(out, name, value)
    return out


def _perf_print_freq(args, arch: str) -> Optional[int]:
    """A bounded throughput run (--stop-step-num without validation: the launchers' performance
    mode) prints at the seed's own interval where its entry gives one (GoogLeNet's: every step)."""
    if args.stop_step_num is None or not args.no_val:
        return None
    return models.get_model_entry(arch).perf_print_freq


# ----------------------------------------------------------------------------- fine-tuning (issue #23)
# Starting from pretrained weights on data of another class count: the head starts fresh
# (ModelEntry.head), the pretrained layers train at a lower lr, or not at all (a linear probe).
# The flags: classify.cli (fine-tuning and evaluation); the defaults: classify.schema.


def _tta(args) -> str:
    mode = getattr(args, "tta", None) or "none"
    if mode not in TTA_MODES:
        raise UserError(f"unknown --tta '{mode}'; choose one of {', '.join(TTA_MODES)}")
    return mode


def _finetune_config(args, demo: dict) -> FineTuneConfig:
    get = lambda name: getattr(args, name, None)  # noqa: E731  (parsers without these flags)
    scale, freeze, fresh = get("backbone_lr_scale"), bool(get("freeze_backbone")), bool(get("fine_tuning"))
    if scale is not None and not 0.0 <= scale <= 1.0:
        raise UserError(f"--backbone-lr-scale is a factor in [0, 1], got {scale:g}")
    starts = "--pretrained" if args.pretrained else "-t" if fresh else None
    for flag, on in (("--freeze-backbone", freeze), ("--backbone-lr-scale", scale is not None)):
        if on and starts is None:
            raise UserError(f"{flag} needs pretrained weights to start from; add --pretrained PATH (or -t for "
                            "torchvision's)")
    if freeze and scale is not None:
        raise UserError("--freeze-backbone trains the head only; --backbone-lr-scale has nothing to scale: drop one")
    if (freeze or fresh) and args.evaluate:
        raise UserError(f"{'--freeze-backbone' if freeze else '-t/--fine-tuning'} is for training; drop it with -e")
    given = tuple(name for name, value in (
        ("epochs", _pick(args.epochs, demo.get("epochs"))), ("lr", args.lr),
        ("lr_scheduler", _pick(args.lr_scheduler, get("lr_step_size"))), ("warmup_epochs", args.warmup_epochs))
        if value is not None)
    return FineTuneConfig(fresh_head=fresh, freeze_backbone=freeze, backbone_lr_scale=scale, given=given)


def finetune_defaults(cfg: Config) -> Tuple[Config, str]:
    """With a fresh head: fine-tuning defaults for the schedule values no flag set (``FINETUNE_EPOCHS``
    epochs, cosine, no warm-up; the head at the recipe's lr, the pretrained layers at
    ``BACKBONE_LR_SCALE`` x it), and a description of what was chosen ("" when nothing)."""
    from dataclasses import replace

    ft, o = cfg.finetune, cfg.optim
    changes = {}
    if "epochs" not in ft.given:
        changes["epochs"] = FINETUNE_EPOCHS
    if "lr_scheduler" not in ft.given:
        changes["lr_scheduler"] = "cosine"
    if "warmup_epochs" not in ft.given:
        changes["warmup_epochs"] = 0.0
    said = [f"{changes['epochs']} epochs" if "epochs" in changes else "",
            "cosine lr" if "lr_scheduler" in changes else "", "no warm-up" if "warmup_epochs" in changes else ""]
    scale = ft.backbone_lr_scale
    if ft.freeze_backbone:
        said.append("only the head trains (--freeze-backbone)")
    elif scale is None:
        scale = BACKBONE_LR_SCALE
        said.append(f"pretrained layers at {scale:g} x the head's lr (--backbone-lr-scale)")
    said = ", ".join(x for x in said if x)
    levers = cfg.levers
    if levers.progressive_resize is not None and "epochs" in changes:  # its ramp ends within the run
        start, end, first, last = levers.progressive_resize
        top = changes["epochs"] - 1
        levers = replace(levers, progressive_resize=(start, end, min(first, top), min(last, top)))
    return replace(cfg, optim=replace(o, **changes), levers=levers,
                   finetune=replace(ft, backbone_lr_scale=scale)), said


# ----------------------------------------------------------------------------- defaults that fit the data

_SMALL = 0.75  # a typical short side below this fraction of the recipe's crop: train near the data's own size
_MIN_STEPS = 4  # full steps per epoch and process that a recipe batch must fill, else it shrinks
# On small images (a fitted size): the batch halves towards 32 steps per epoch and process, not below
# 32 per device (GoogLeNet on 1,438 64-px digits, 12 epochs: 79% at batch 32 vs 31% at 256, 3 seeds)
_SMALL_DATA_STEPS, _SMALL_DATA_BATCH = 32, 32
SMALL_IMAGE_SCALE = (0.25, 1.0)  # RandomResizedCrop's area range at a fitted size (docs/own-data.md: measured)


@dataclass(frozen=True)
class _Fit:
    """What the data asks of the defaults (None: nothing, the recipe's value)."""

    image_size: Optional[int] = None
    per_device_batch: Optional[int] = None
    note: str = ""  # what was seen
    batch_note: str = ""
    train_images: Optional[int] = None  # the whole training set's, when counted


def _fit_to_data(args, arch: str, recipe: Recipe, demo: dict, *, path: Optional[str], kind: str,
                 world_size: int) -> _Fit:
    """The image size and batch that fit an ImageFolder tree (or CIFAR-10) where no flag, and
    no demo profile, sets them. ImageNet-like data (a typical short side of at least 0.75x the
    recipe's crop, a training set of at least 4 full recipe batches per process) gets the
    recipe's values exactly. Deterministic: a resumed run resolves the same."""
    if kind != "folder" or path is None or demo:
        return _Fit()
    from .data.profile import profile_folder
    from .data.shards import is_shard_source

    if is_shard_source(path):  # no cheap headers: the recipe's sizes
        return _Fit()
    batch_given = args.batch_size is not None or args.per_batch_size is not None
    try:
        need = max(_MIN_STEPS, _SMALL_DATA_STEPS) * recipe.global_batch(world_size)  # counted up to this many
        profile = profile_folder(path, need_images=need)
    except (UserError, OSError):  # the run's (and --check's) own checks say what is wrong
        return _Fit()
    size, note = None, ""
    small = profile.short_side is not None and profile.short_side < _SMALL * recipe.image_size
    if profile.short_side is not None:
        note = f"median short side {profile.short_side} px of {profile.sampled} images"
        if args.image_size is None and small:
            size = max(16 * max(1, int(profile.short_side / 16 + 0.5)), models.min_image_size(arch))
    per_device, batch_note = None, ""
    if not batch_given and profile.train_images is not None:
        per_device, batch_note = _fit_batch(recipe, images=profile.train_images, world_size=world_size, small=small)
    return _Fit(image_size=size, per_device_batch=per_device, note=note, batch_note=batch_note,
                train_images=profile.train_images if profile.complete else None)


def _fit_batch(recipe: Recipe, *, images: int, world_size: int, small: bool) -> Tuple[Optional[int], str]:
    """The per-device batch that fits the training set, with the one line that says so (None, ""
    for the recipe's). A recipe batch that cannot give every process ``_MIN_STEPS`` full steps
    per epoch halves until it does (at least 1). On small images (``small``: a median short side
    below 0.75x the recipe's crop) it also halves towards ``_SMALL_DATA_STEPS`` steps per epoch
    while it stays at least ``_SMALL_DATA_BATCH`` per device: few images train best with more,
    smaller steps (docs/own-data.md: measured)."""
    recipe_global = recipe.global_batch(world_size)
    per_device = recipe_global // world_size
    per_rank = -(-images // world_size)
    fitted = per_device
    while fitted > 1 and (per_rank // fitted < _MIN_STEPS or (
            small and per_rank // fitted < _SMALL_DATA_STEPS and fitted // 2 >= _SMALL_DATA_BATCH)):
        fitted //= 2
    if fitted == per_device:
        return None, ""
    base = recipe.lr(world_size)
    lr = base * fitted * world_size / recipe_global
    return fitted, (f"=> batch {fitted * world_size} ({fitted}/device) instead of the recipe's {recipe_global}: "
                    f"{images} training images fill {per_rank // fitted} steps per epoch with it "
                    f"({per_rank // per_device} with the recipe's); lr {lr:g} (the recipe's {base:g} scaled "
                    f"linearly, x{fitted * world_size}/{recipe_global}); -b/--batch-size sets it")


def _crop_ranges(args, fit: _Fit) -> dict:
    """``--rrc-scale``/``--rrc-ratio`` (timm's ``--scale``/``--ratio``); at a size fitted to small
    images the area range keeps the object in view (``SMALL_IMAGE_SCALE``)."""
    scale = _pair("--rrc-scale", getattr(args, "rrc_scale", None), low=0.0, high=1.0)
    ratio = _pair("--rrc-ratio", getattr(args, "rrc_ratio", None), low=0.0, high=None)
    return dict(rrc_scale=scale or (SMALL_IMAGE_SCALE if fit.image_size is not None else RRC_SCALE),
                rrc_ratio=ratio or RRC_RATIO)


def _pair(name: str, text: Optional[str], *, low: float, high: Optional[float]) -> Optional[Tuple[float, float]]:
    """``MIN,MAX`` with ``low < MIN <= MAX`` (``<= high``); None when not given."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    bound = f" and MAX <= {high:g}" if high is not None else ""
    if (len(values) != 2 or not all(v == v for v in values) or values[0] <= low or values[0] > values[1]
            or (high is not None and values[1] > high) or values[1] == float("inf")):
        raise UserError(f"{name} takes MIN,MAX with {low:g} < MIN <= MAX{bound}, e.g. "
                        f"{'0.25,1' if high else '0.75,1.333'}; got '{text}'")
    return values


def _sources(args, demo: dict, fit: _Fit, optim: OptimConfig) -> Sources:
    """Where the image size, batch, lr, epochs and the crop's area range came from."""
    size = "flag" if args.image_size is not None else ("demo" if "image_size" in demo else
                                                        "data" if fit.image_size is not None else "recipe")
    if args.batch_size is not None or args.per_batch_size is not None:
        batch = "flag"
    else:
        batch = "demo" if "batch_size" in demo else ("data" if fit.per_device_batch is not None else "recipe")
    lr = "flag" if args.lr is not None else (batch if optim.lr_scale != 1.0 else "recipe")
    epochs = "flag" if args.epochs is not None else ("demo" if "epochs" in demo else "recipe")
    augmentation = ("flag" if getattr(args, "rrc_scale", None) is not None
                    else "data" if fit.image_size is not None else "recipe")
    return Sources(image_size=size, batch=batch, lr=lr, epochs=epochs, augmentation=augmentation,
                   data_note=fit.note, batch_note=fit.batch_note, train_images=fit.train_images)
