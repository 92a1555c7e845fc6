"""The run's configuration, resolved once at the boundary from argv + recipe (+ demo profile).

Order of precedence: a flag given on the command line > the demo profile (only when no
data path is given) > the recipe > built-in defaults. Engine code receives the resolved
``Config`` fields as plain arguments, never the argparse namespace.
"""

import argparse
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Tuple

import models
from models.recipe import Recipe

from .data import BACKENDS
from .devices import cpu_count
from .errors import UserError
from .schedules import SCHEDULES

CHECK_EXIT_ERROR = 1  # --check's exit code for a mistake (a run's usage errors exit 2)

__all__ = ["CheckFlag", "Config", "DataConfig", "OptimConfig", "PrecisionConfig", "LoopConfig", "OutputConfig",
           "build_config", "OneLineParser", "parse_int_list"]

OPT_LEVELS = ("O0", "O1", "O2", "O3")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage dump) with exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


class CheckFlag(argparse.Action):
    """main.py's ``--check``: sets ``args.check``; a usage error after it on the command line is
    then the check's kind of error too, one line ``error: ...`` and exit code 1 (the launcher
    scripts put ``--check`` first)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        parser.error = lambda message: parser.exit(CHECK_EXIT_ERROR, f"error: {parser.prog}: {message}; see --help\n")


def parse_int_list(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(text).replace(" ", "").split(",") if x != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None


@dataclass(frozen=True)
class DataConfig:
    """What to read and how to feed it (``classify.data``)."""

    path: Optional[str]  # None: --dummy or the demo set
    kind: str  # folder | demo | dummy (cifar10 is detected from the folder)
    backend: str  # pil | gpu (dummy data has kind dummy)
    image_size: int
    val_resize: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    color_jitter: float
    workers: int
    num_classes: Optional[int]  # None: the classes in the data
    no_val: bool
    dummy_sizes: Tuple[int, int]


@dataclass(frozen=True)
class OptimConfig:
    """Batch, optimizer and lr schedule (``classify.optim``, ``classify.schedules``)."""

    epochs: int
    start_epoch: int
    batch_size: int  # global over all processes
    per_device_batch: int
    lr: float
    momentum: float
    weight_decay: float
    label_smoothing: float  # training loss only; validation loss is plain cross-entropy
    lr_scheduler: str
    lr_epochs: Tuple[int, ...]
    lr_step: int
    lr_gamma: float
    warmup_epochs: float


@dataclass(frozen=True)
class PrecisionConfig:
    """Mixed precision and the fast paths (``classify.amp``, ``classify.fast``)."""

    amp: bool
    opt_level: Optional[str]
    recipe_opt_level: str
    loss_scale: Optional[float]
    amp_dtype: str
    channels_last: Optional[bool] = None  # None: on for cuda
    compile: bool = False
    benchmark: bool = True  # cudnn.benchmark


@dataclass(frozen=True)
class LoopConfig:
    """How the loop runs and stops (``classify.loop``)."""

    print_freq: int
    stop_step_num: Optional[int]
    max_bad_images: float = 0.01  # fraction of unreadable images tolerated
    nan_skips: int = 0  # --nan-policy skip:N
    prof: bool = False
    tensorboard: bool = False


@dataclass(frozen=True)
class OutputConfig:
    """Where results go and what to start from (``classify.checkpoint``)."""

    output_dir: Path
    ckpt_interval: int = 0  # also save every N steps
    keep_checkpoints: int = 0  # also keep the N newest checkpoint-<epoch>.pth.tar
    resume: Optional[str] = None  # a path, or "auto"
    evaluate: bool = False
    pretrained: Optional[str] = None
    force_output_dir: bool = False  # take over another host's lock (classify.lock)


@dataclass(frozen=True)
class Config:
    arch: str
    recipe: str
    seed: int
    device: str
    device_id: Optional[int]
    world_size: int
    data: DataConfig
    optim: OptimConfig
    precision: PrecisionConfig
    loop: LoopConfig
    output: OutputConfig
    dist_backend: Optional[str] = None
    model_kwargs: dict = field(default_factory=dict)
    argv: Tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The resolved configuration, nested as above (``config.json``)."""
        d = asdict(self)
        d["output"]["output_dir"] = str(self.output.output_dir)
        return d

    def flat(self) -> dict:
        """Every field at one level, as an argparse namespace would hold them (the checkpoint's
        ``args``: plain values only, so that it loads with ``weights_only=True``)."""
        out = {}
        for key, value in self.to_dict().items():
            if key in _SECTIONS:
                out.update(value)
            else:
                out[key] = value
        for old, new in (("path", "data"), ("kind", "data_kind"), ("backend", "data_backend")):
            out[new] = out.pop(old)
        return out


_SECTIONS = ("data", "optim", "precision", "loop", "output")


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
        raise UserError(f"batch size {args.batch_size or args.per_batch_size} is smaller than the "
                        f"{local_world} devices; use at least 1 image per device")
    return per_device * world_size, per_device


def _recipe_lr(args, recipe: Recipe, demo: dict, *, world_size: int, global_batch: int) -> float:
    """The recipe's lr; when the batch was changed by a flag or by the demo profile, scaled
    linearly to that batch (Goyal et al., 2017) so that a small CPU batch does not diverge
    with an lr made for hundreds of images."""
    base = recipe.lr(world_size)
    if args.batch_size is None and args.per_batch_size is None and "batch_size" not in demo:
        return base
    return base * global_batch / recipe.global_batch(world_size)


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
    data, kind = _data_source(args)
    demo = _demo_profile(arch) if kind == "demo" else {}
    return Config(
        arch=arch, recipe=recipe.name, seed=_pick(args.seed, recipe.seed),
        device=args.device, device_id=_device_id(args.device_id, args.device_list),
        world_size=world_size, dist_backend=args.dist_backend,
        data=_data_config(args, arch, recipe, demo=demo, path=data, kind=kind, local_world=local_world),
        optim=_optim_config(args, recipe, demo, world_size=world_size, local_world=local_world),
        precision=_precision_config(args, recipe),
        loop=LoopConfig(print_freq=_pick(args.print_freq, 10), stop_step_num=args.stop_step_num,
                        max_bad_images=_fraction(args.max_bad_images), nan_skips=_nan_skips(args.nan_policy),
                        prof=bool(args.prof), tensorboard=_tensorboard(args.tensorboard)),
        output=OutputConfig(output_dir=Path(args.output_dir or ".").expanduser(),
                            ckpt_interval=args.ckpt_interval or 0, keep_checkpoints=args.keep_checkpoints or 0,
                            resume=args.resume, evaluate=bool(args.evaluate), pretrained=args.pretrained,
                            force_output_dir=bool(getattr(args, "force_output_dir", False))),
        model_kwargs=_model_kwargs(args, arch, recipe), argv=tuple(sys.argv),
    )


def _check_numbers(args) -> None:
    for name in ("lr", "epochs", "momentum", "workers", "print_freq", "image_size", "val_resize"):
        _check_positive(f"--{name.replace('_', '-')}", getattr(args, name),
                        allow_zero=name in ("momentum", "workers"))
    for name in ("weight_decay", "warmup_epochs", "ckpt_interval", "start_epoch", "keep_checkpoints"):
        _check_positive(f"--{name.replace('_', '-')}", getattr(args, name), allow_zero=True)
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
                 local_world: int) -> DataConfig:
    image_size = _pick(args.image_size, demo.get("image_size"), recipe.image_size)
    if image_size < models.min_image_size(arch):
        raise UserError(f"--image-size {image_size} is too small for {arch}; "
                        f"use at least {models.min_image_size(arch)}")
    val_resize = _pick(args.val_resize, demo.get("val_resize") if args.image_size is None else None,
                       round(image_size * recipe.val_resize / recipe.image_size))
    if val_resize < image_size:
        raise UserError(f"--val-resize {val_resize} is smaller than --image-size {image_size}; "
                        "the center crop needs val-resize >= image-size")
    return DataConfig(
        path=path, kind=kind, backend="gpu" if args.data_backend == "gpu" else "pil",
        image_size=image_size, val_resize=val_resize, mean=recipe.mean, std=recipe.std,
        color_jitter=recipe.color_jitter,
        workers=_pick(args.workers, demo.get("workers"), _default_workers(local_world)),
        num_classes=args.num_classes, no_val=bool(args.no_val), dummy_sizes=_dummy_sizes(args.dummy_size))


def _optim_config(args, recipe: Recipe, demo: dict, *, world_size: int, local_world: int) -> OptimConfig:
    global_batch, per_device = _batch(args, recipe, demo, world_size=world_size, local_world=local_world)
    scheduler = _pick(args.lr_scheduler, recipe.lr_scheduler)
    if scheduler not in SCHEDULES:
        raise UserError(f"unknown --lr-scheduler '{scheduler}'; choose one of {', '.join(SCHEDULES)}")
    return OptimConfig(
        epochs=_pick(args.epochs, demo.get("epochs"), recipe.epochs), start_epoch=args.start_epoch or 0,
        batch_size=global_batch, per_device_batch=per_device,
        lr=_pick(args.lr, _recipe_lr(args, recipe, demo, world_size=world_size, global_batch=global_batch)),
        momentum=_pick(args.momentum, recipe.momentum), weight_decay=_pick(args.weight_decay, recipe.weight_decay),
        label_smoothing=_label_smoothing(args, recipe), lr_scheduler=scheduler,
        lr_epochs=_pick(args.lr_epochs, recipe.lr_epochs), lr_step=recipe.lr_step,
        lr_gamma=_pick(args.lr_gamma, recipe.lr_gamma),
        warmup_epochs=_pick(args.warmup_epochs, recipe.warmup_epochs))


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
        scale = float(value)
    except ValueError:
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
