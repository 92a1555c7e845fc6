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
from .devices import cpu_count, resolve_kind
from .errors import UserError
from .schedules import SCHEDULES, WARMUP_METHODS
from .transforms import AUTO_AUGMENT

CHECK_EXIT_ERROR = 1  # --check's exit code for a mistake (a run's usage errors exit 2)

__all__ = ["add_seed_flags", "SEED_NO_OPS", "LOG_FORMATS", "CheckFlag", "Config", "DataConfig", "OptimConfig",
           "PrecisionConfig", "LoopConfig", "OutputConfig", "build_config", "OneLineParser", "parse_int_list",
           "LeverConfig", "add_lever_flags", "FineTuneConfig", "add_finetune_flags", "finetune_defaults",
           "TTA_MODES"]

OPT_LEVELS = ("O0", "O1", "O2", "O3")
LOG_FORMATS = ("examples", "torchvision", "prefixed")  # classify/report.py; a model folder picks its own


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


# ----------------------------------------------------------------------------- the seeds' flags
# The flags of the seeds' own entry points (models/<net>/README.md, "Flags"), each with its meaning
# here, or accepted without effect (SEED_NO_OPS) where it has none. Aliases of main.py's flags
# share its dest and leave its default alone (argparse.SUPPRESS).

SEED_NO_OPS = {
    "--checkpoint-nameprefix": "the checkpoint names are fixed (checkpoint.pth.tar, model_best.pth.tar: "
                               "--resume auto and the eval scripts read them)",
    "--exp_subpath": "names the seed's experiment folder; outputs go to --output-dir",
}


def add_seed_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the seeds' flags (models/<net>/README.md)")
    add = g.add_argument
    alias = dict(default=argparse.SUPPRESS)
    add("--test-only", "--test_only", dest="evaluate", action="store_true", help="= -e/--evaluate", **alias)
    add("--max_steps", "--max-steps", dest="stop_step_num", type=int, metavar="N", help="= --stop-step-num", **alias)
    add("--distributed", dest="multiprocessing_distributed", action="store_true",
        help="= --multiprocessing-distributed (one worker per device)", **alias)
    add("--dist_rank", "--dist-rank", dest="rank", type=int, metavar="N", help="= --rank (this node's rank)", **alias)
    add("--npu", dest="device_id", type=int, metavar="N", help="= --device-id (the NPU/GPU id of a 1-device run)", **alias)
    add("--pm", "--precision-mode", "--precision_mode", dest="opt_level", metavar="LEVEL", help="= --opt-level", **alias)
    add("--static-loss-scale", "--static_loss_scale", "--loss-scale-value", dest="loss_scale", metavar="X",
        help="= --loss-scale", **alias)
    add("--warm_up_epochs", "--warm-up-epochs", "--warmup", dest="warmup_epochs", type=float, metavar="N",
        help="= --warmup-epochs", **alias)
    add("-bm", dest="benchmark", type=int, metavar="0|1", help="= --benchmark 0|1", **alias)
    add("--workspace", dest="output_dir", metavar="DIR", help="= --output-dir", **alias)
    add("--lr-step-size", "--lr_step_size", type=int, default=None, metavar="N",
        help="step schedule: x --lr-gamma every N epochs (implies --lr-scheduler step unless given)")
    add("-ef", "--eval-freq", "--eval_freq", type=int, default=None, metavar="N",
        help="validate every N epochs, and always after the last one (default 1)")
    add("--checkpoint-freq", "--checkpoint_freq", type=int, default=None, metavar="N",
        help="also keep checkpoint-<epoch>.pth.tar every N epochs (default 0: only the latest)")
    add("--log-format", "--log_format", default="examples", choices=LOG_FORMATS,
        help="log line format: examples (pytorch/examples, default) | torchvision (references' MetricLogger: "
        "models/googlenet/) | prefixed ([npu id: 0 ] prefixes: models/inception_resnet_v2/)")
    for flag, why in SEED_NO_OPS.items():
        dest = f"noop_{flag.strip('-').replace('-', '_')}"
        add(flag, dest=dest, default=None, metavar="X", help=f"accepted, no effect: {why}")


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
    index_cache: Optional[str] = None  # the file-index folder (--index-cache); None: --no-index-cache
    val_crop_size: int = 0  # the val centre crop (--val-crop-size); 0: image_size


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
    lr_scale: float = 1.0  # the linear scaling applied to the recipe's lr (1: none, or --lr given)
    recipe_lr: Optional[float] = None  # the recipe's lr at its batch recipe_batch, before scaling
    recipe_batch: Optional[int] = None


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
    eval_freq: int = 1  # validate every N epochs (and after the last)
    log_format: str = "examples"  # LOG_FORMATS
    tta: str = "none"  # test-time augmentation of every evaluation: none | flip (TTA_MODES)


@dataclass(frozen=True)
class OutputConfig:
    """Where results go and what to start from (``classify.checkpoint``)."""

    output_dir: Path
    ckpt_interval: int = 0  # also save every N steps
    keep_checkpoints: int = 0  # also keep the N newest checkpoint-<epoch>.pth.tar
    checkpoint_freq: int = 0  # also keep checkpoint-<epoch>.pth.tar every N epochs (--checkpoint-freq)
    resume: Optional[str] = None  # a path, or "auto"
    evaluate: bool = False
    pretrained: Optional[str] = None
    fresh: bool = False  # start over in output_dir, its old run moved to previous-<time>/ (classify.rundir)
    force_output_dir: bool = False  # take over another host's lock (classify.lock)
    continued: Optional[int] = None  # set by the run: an unfinished run continued without --resume (its epochs)


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
    levers: "LeverConfig" = field(default_factory=lambda: LeverConfig())
    finetune: "FineTuneConfig" = field(default_factory=lambda: FineTuneConfig())

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


_SECTIONS = ("data", "optim", "precision", "loop", "output", "levers", "finetune")


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


def _recipe_lr(args, recipe: Recipe, demo: dict, *, world_size: int, global_batch: int, accum: int = 1) -> float:
    """The recipe's lr; when the batch was changed by a flag or by the demo profile, scaled
    linearly to that batch (Goyal et al., 2017) so that a small CPU batch does not diverge
    with an lr made for hundreds of images. With gradient accumulation, the batch of one
    optimizer step (global batch x ``accum``) is the one that counts."""
    base = recipe.lr(world_size)
    if accum == 1 and args.batch_size is None and args.per_batch_size is None and "batch_size" not in demo:
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
    data, kind = _data_source(args)
    demo = _demo_profile(arch) if kind == "demo" else {}
    optim = _optim_config(args, recipe, demo, world_size=world_size, local_world=local_world)
    return Config(
        arch=arch, recipe=recipe.name, seed=_pick(args.seed, recipe.seed),
        device=args.device, device_id=_device_id(args.device_id, args.device_list),
        world_size=world_size, dist_backend=args.dist_backend,
        data=_data_config(args, arch, recipe, demo=demo, path=data, kind=kind, local_world=local_world),
        optim=optim, precision=_precision_config(args, recipe),
        loop=LoopConfig(print_freq=_pick(args.print_freq, 10), stop_step_num=args.stop_step_num,
                        max_bad_images=_fraction(args.max_bad_images), nan_skips=_nan_skips(args.nan_policy),
                        prof=bool(args.prof), tensorboard=_tensorboard(args.tensorboard),
                        eval_freq=getattr(args, "eval_freq", None) or 1,
                        log_format=getattr(args, "log_format", "examples"), tta=_tta(args)),
        output=OutputConfig(output_dir=Path(args.output_dir or ".").expanduser(),
                            ckpt_interval=args.ckpt_interval or 0, keep_checkpoints=args.keep_checkpoints or 0,
                            checkpoint_freq=getattr(args, "checkpoint_freq", None) or 0,
                            resume=args.resume, evaluate=bool(args.evaluate), pretrained=_pretrained(args),
                            fresh=_fresh(args), force_output_dir=bool(getattr(args, "force_output_dir", False))),
        model_kwargs=_model_kwargs(args, arch, recipe), argv=tuple(sys.argv),
        levers=_lever_config(args, global_batch=optim.batch_size, world_size=world_size,
                             warmup_epochs=optim.warmup_epochs, epochs=optim.epochs,
                             min_size=models.min_image_size(arch)),
        finetune=_finetune_config(args, demo),
    )


def _fresh(args) -> bool:
    """``--fresh`` starts over: with ``--resume auto`` (the launcher's) nothing is resumed; with
    a checkpoint path it contradicts itself."""
    fresh = bool(getattr(args, "fresh", False))
    if fresh and args.resume not in (None, "auto"):
        raise UserError(f"--fresh starts over, --resume {args.resume} continues; drop one (to start from its "
                        f"weights: --pretrained {args.resume})")
    return fresh


def _check_numbers(args) -> None:
    for name in ("lr", "epochs", "momentum", "workers", "print_freq", "image_size", "val_resize"):
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
                 local_world: int) -> DataConfig:
    image_size = _pick(args.image_size, demo.get("image_size"), recipe.image_size)
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
        index_cache=_index_cache(args))


def _index_cache(args) -> Optional[str]:
    """``--index-cache DIR`` / ``--no-index-cache``; ``--cache-dataset`` (torchvision's
    references) asks for the cache, which is on by default."""
    if getattr(args, "no_index_cache", False):
        if getattr(args, "index_cache", None) or getattr(args, "cache_dataset", False):
            raise UserError("--no-index-cache contradicts --index-cache/--cache-dataset; drop one")
        return None
    from .data.index import default_index_cache

    return str(Path(getattr(args, "index_cache", None) or default_index_cache()).expanduser())


def _optim_config(args, recipe: Recipe, demo: dict, *, world_size: int, local_world: int) -> OptimConfig:
    global_batch, per_device = _batch(args, recipe, demo, world_size=world_size, local_world=local_world)
    step_size = getattr(args, "lr_step_size", None)  # torchvision references' StepLR period
    scheduler = _pick(args.lr_scheduler, "step" if step_size else None, recipe.lr_scheduler)
    if scheduler not in SCHEDULES:
        raise UserError(f"unknown --lr-scheduler '{scheduler}'; choose one of {', '.join(SCHEDULES)}")
    recipe_lr = _recipe_lr(args, recipe, demo, world_size=world_size, global_batch=global_batch,
                           accum=_accum_steps(args, global_batch))
    return OptimConfig(
        lr_scale=1.0 if args.lr is not None else recipe_lr / recipe.lr(world_size),
        recipe_lr=recipe.lr(world_size), recipe_batch=recipe.global_batch(world_size),
        epochs=_pick(args.epochs, demo.get("epochs"), recipe.epochs), start_epoch=args.start_epoch or 0,
        batch_size=global_batch, per_device_batch=per_device,
        lr=_pick(args.lr, recipe_lr),
        momentum=_pick(args.momentum, recipe.momentum), weight_decay=_pick(args.weight_decay, recipe.weight_decay),
        label_smoothing=_label_smoothing(args, recipe), lr_scheduler=scheduler,
        lr_epochs=_pick(args.lr_epochs, () if step_size else None, recipe.lr_epochs), lr_step=_pick(step_size, recipe.lr_step),
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


# ----------------------------------------------------------------------------- levers (issue #14)
# The training levers of torchvision's references and timm, with their flag names (timm's as
# aliases). Each one is off by default, and off it changes nothing in the seeds' step.


@dataclass(frozen=True)
class LeverConfig:
    """The levers beyond the seed recipes (README, "Beyond the seed recipes")."""

    grad_accum_steps: int = 1  # micro-batches per optimizer step
    clip_grad_norm: Optional[float] = None  # max global L2 norm of the gradients
    model_ema: bool = False
    model_ema_decay: float = 0.99998  # torchvision's default (adjusted, see classify/ema.py)
    model_ema_steps: int = 32  # optimizer steps between EMA updates
    model_ema_warmup: bool = False  # timm: warm the decay up
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mixup_switch_prob: float = 0.5  # with both: the chance of CutMix for a batch
    norm_weight_decay: Optional[float] = None  # None: --weight-decay, as the seeds
    bias_weight_decay: Optional[float] = None
    sync_bn: bool = False  # DDP only (a notice and nothing else with one process)
    deterministic: bool = False  # torch.use_deterministic_algorithms, cuDNN deterministic
    lr_warmup_method: str = "linear"
    lr_warmup_decay: Optional[float] = None  # None: linear from ~0 (the seeds'); constant: 0.01
    auto_augment: Optional[str] = None  # ra | ta_wide | augmix | imagenet
    ra_magnitude: int = 9
    augmix_severity: int = 3
    random_erase: float = 0.0
    ra_sampler: bool = False  # repeated augmentation
    ra_reps: int = 3
    progressive_resize: Optional[Tuple[int, int, int, int]] = None  # START, END, FROM_EPOCH, TO_EPOCH


def add_lever_flags(parser: argparse.ArgumentParser) -> None:
    """The levers' flags, in their own group of ``main.py --help``."""
    g = parser.add_argument_group("beyond the seed recipes (torchvision / timm flag names)")
    add = g.add_argument
    add("--grad-accum-steps", "--grad_accum_steps", type=int, default=None, metavar="N",
        help="accumulate the gradients of N batches per optimizer step (default 1)")
    add("--optimizer-batch-size", "--optimizer_batch_size", type=int, default=None, metavar="B",
        help="accumulate to this global batch per optimizer step (a multiple of the global batch)")
    add("--clip-grad-norm", "--clip_grad_norm", "--clip-grad", dest="clip_grad_norm", type=float, default=None,
        metavar="X", help="clip the gradients' global L2 norm to X (with AMP: unscaled first)")
    add("--model-ema", "--model_ema", action="store_true", help="keep an EMA of the weights, evaluated every epoch")
    add("--model-ema-decay", "--model_ema_decay", type=float, default=None, metavar="D",
        help="EMA decay per update (default 0.99998, adjusted as torchvision's)")
    add("--model-ema-steps", "--model_ema_steps", type=int, default=None, metavar="N",
        help="optimizer steps between EMA updates (default 32)")
    add("--model-ema-warmup", "--model_ema_warmup", action="store_true",
        help="timm's EMA decay warm-up: min(decay, 1 - (1 + t)^-2/3) at the t-th update")
    add("--mixup-alpha", "--mixup_alpha", "--mixup", dest="mixup_alpha", type=float, default=None, metavar="A",
        help="MixUp with Beta(A, A) on each batch (default off)")
    add("--cutmix-alpha", "--cutmix_alpha", "--cutmix", dest="cutmix_alpha", type=float, default=None, metavar="A",
        help="CutMix with Beta(A, A) on each batch (default off)")
    add("--mixup-switch-prob", "--mixup_switch_prob", type=float, default=None, metavar="P",
        help="with both: CutMix for a batch with probability P, else MixUp (default 0.5)")
    add("--norm-weight-decay", "--norm_weight_decay", type=float, default=None, metavar="X",
        help="weight decay of normalisation layers' parameters (default: --weight-decay)")
    add("--bias-weight-decay", "--bias_weight_decay", type=float, default=None, metavar="X",
        help="weight decay of biases (default: --weight-decay)")
    _add_data_lever_flags(add)


def _add_data_lever_flags(add) -> None:
    """The levers of the data side and the run's set-up (``add``: the group's add_argument)."""
    add("--sync-bn", "--sync_bn", action="store_true",
        help="synchronise BatchNorm statistics across processes (DDP on cuda/npu; nothing with one process)")
    add("--deterministic", "--use-deterministic-algorithms", "--use_deterministic_algorithms", dest="deterministic",
        action="store_true", help="deterministic kernels (torch.use_deterministic_algorithms, cuDNN, cuBLAS)")
    add("--train-crop-size", "--train_crop_size", dest="image_size", type=int, default=None, metavar="S",
        help="= --image-size (the train crop; also the val crop unless --val-crop-size)")
    add("--val-crop-size", "--val_crop_size", type=int, default=None, metavar="S",
        help="val centre crop (default: the train crop)")
    add("--val-resize-size", "--val_resize_size", dest="val_resize", type=int, default=None, metavar="S",
        help="= --val-resize (val resize before the centre crop)")
    add("--auto-augment", "--auto_augment", "--aa", dest="auto_augment", default=None, metavar="POLICY",
        help=f"{' | '.join(AUTO_AUGMENT)} (torchvision v2 policies, pil backend)")
    add("--ra-magnitude", "--ra_magnitude", type=int, default=None, metavar="M", help="RandAugment magnitude (9)")
    add("--augmix-severity", "--augmix_severity", type=int, default=None, metavar="S", help="AugMix severity (3)")
    add("--random-erase", "--random_erase", "--reprob", dest="random_erase", type=float, default=None, metavar="P",
        help="random erasing probability (default 0)")
    add("--ra-sampler", "--ra_sampler", action="store_true", help="repeated augmentation sampler")
    add("--ra-reps", "--ra_reps", type=int, default=None, metavar="R", help="repetitions per image (default 3)")
    add("--aug-repeats", "--aug_repeats", type=int, default=None, metavar="R",
        help="timm: --ra-sampler --ra-reps R (0: off)")
    add("--progressive-resize", "--progressive_resize", default=None, metavar="START:END[:FROM:TO]",
        help="FFCV-style: the train size ramps from START to END between epochs FROM and TO (default: the run)")
    add("--lr-warmup-epochs", "--lr_warmup_epochs", dest="warmup_epochs", type=float, default=None, metavar="E",
        help="= --warmup-epochs")
    add("--lr-warmup-method", "--lr_warmup_method", default=None, metavar="NAME",
        help=f"{' | '.join(WARMUP_METHODS)} (default linear)")
    add("--lr-warmup-decay", "--lr_warmup_decay", type=float, default=None, metavar="D",
        help="warm-up start factor: linear from D x lr, constant at D x lr (default: linear from 0, constant 0.01)")


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
                  epochs: int = 1, min_size: int = 1) -> LeverConfig:
    get = lambda name: getattr(args, name, None)  # noqa: E731  (parsers without the lever flags)
    _check_positive("--clip-grad-norm", get("clip_grad_norm"))
    return LeverConfig(grad_accum_steps=_accum_steps(args, global_batch), clip_grad_norm=get("clip_grad_norm"),
                       **_ema_levers(get), **_mix_levers(get), **_decay_levers(get),
                       sync_bn=_sync_bn(bool(get("sync_bn")), device=args.device, world_size=world_size),
                       deterministic=bool(get("deterministic")), **_warmup_levers(get, warmup_epochs),
                       **_augment_levers(get), **_ra_levers(get),
                       progressive_resize=_progressive(get("progressive_resize"), epochs=epochs, min_size=min_size))


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


def _warmup_levers(get, warmup_epochs: float) -> dict:
    method, decay = get("lr_warmup_method"), get("lr_warmup_decay")
    if method is not None and method not in WARMUP_METHODS:
        raise UserError(f"unknown --lr-warmup-method '{method}'; choose one of {', '.join(WARMUP_METHODS)}")
    if decay is not None and not 0.0 < decay <= 1.0:
        raise UserError(f"--lr-warmup-decay is a factor in (0, 1], got {decay}")
    if (method is not None or decay is not None) and not warmup_epochs:
        raise UserError("--lr-warmup-method/--lr-warmup-decay need a warm-up; add --lr-warmup-epochs E")
    return dict(lr_warmup_method=method or "linear", lr_warmup_decay=decay)


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


# ----------------------------------------------------------------------------- fine-tuning (issue #23)
# Starting from pretrained weights on data of another class count: the head starts fresh
# (ModelEntry.head), the pretrained layers train at a lower lr, or not at all (a linear probe).

TTA_MODES = ("none", "flip")
# The pretrained layers' lr over the new head's (--backbone-lr-scale) when a head starts fresh:
# the head learns from scratch at the recipe's lr, the pretrained layers move at a tenth of it,
# the usual "fine-tune at a tenth of the training lr" (docs/own-data.md, "Fine-tuning").
BACKBONE_LR_SCALE = 0.1
FINETUNE_EPOCHS = 10  # with a fresh head and no --epochs; cosine to 0, no warm-up


@dataclass(frozen=True)
class FineTuneConfig:
    """``-t/--fine-tuning``, ``--freeze-backbone``, ``--backbone-lr-scale`` and which of the
    schedule's values came from flags (a fresh head gets fine-tuning defaults for the others)."""

    fresh_head: bool = False  # -t: the head starts fresh even when the class count matches
    freeze_backbone: bool = False  # only the head trains; the rest (BN statistics too) stays as loaded
    backbone_lr_scale: Optional[float] = None  # None: BACKBONE_LR_SCALE with a fresh head, else 1
    given: Tuple[str, ...] = ()  # the schedule values set by a flag (or the demo profile): epochs, lr, ...


def add_finetune_flags(parser: argparse.ArgumentParser) -> None:
    """Fine-tuning and evaluation flags (docs/own-data.md), in their own group of ``--help``."""
    g = parser.add_argument_group("fine-tuning and evaluation (docs/own-data.md)")
    add = g.add_argument
    add("-t", "--fine-tuning", "--fine_tuning", dest="fine_tuning", action="store_true",
        help="the seeds' fine-tuning: start from --pretrained (torchvision's when no PATH) with a fresh head")
    add("--freeze-backbone", "--freeze_backbone", action="store_true",
        help="train the head only (a linear probe): every other layer, BN statistics too, stays as loaded")
    add("--backbone-lr-scale", "--backbone_lr_scale", type=float, default=None, metavar="X",
        help=f"lr of the pretrained layers = X x --lr (default {BACKBONE_LR_SCALE:g} when the head starts fresh, "
        "else 1)")
    add("--tta", default=None, metavar="MODE", help="test-time augmentation of every evaluation: none (default) | "
        "flip (mean of the image's and its mirror's logits)")


def _pretrained(args) -> Optional[str]:
    """``--pretrained [PATH]``; ``-t`` alone starts from torchvision's weights (a bare --pretrained)."""
    return args.pretrained or ("torchvision" if getattr(args, "fine_tuning", False) else None)


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
        said.append(f"pretrained layers at {scale:g} x lr (--backbone-lr-scale)")
    said = ", ".join(x for x in said if x)
    levers = cfg.levers
    if levers.progressive_resize is not None and "epochs" in changes:  # its ramp ends within the run
        start, end, first, last = levers.progressive_resize
        top = changes["epochs"] - 1
        levers = replace(levers, progressive_resize=(start, end, min(first, top), min(last, top)))
    return replace(cfg, optim=replace(o, **changes), levers=levers,
                   finetune=replace(ft, backbone_lr_scale=scale)), said
