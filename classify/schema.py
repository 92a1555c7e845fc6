"""The run's configuration as data: frozen dataclasses, resolved once at the boundary
(``classify.resolve.build_config``: flags + recipe + data) and handed to the engine, which
reads their fields as plain arguments. Standard library only.

``Config`` = ``arch, recipe, seed, device, ...`` + the sub-configs ``data``, ``optim``,
``precision``, ``loop``, ``output``, ``levers`` (the levers beyond the seed recipes, all
off by default) and ``finetune`` (starting from pretrained weights: docs/own-data.md).
``Config.to_dict()`` is ``config.json``; ``Config.flat()`` the checkpoint's ``args`` (one
level, plain values).
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Tuple

__all__ = ["Config", "DataConfig", "OptimConfig", "PrecisionConfig", "LoopConfig", "OutputConfig", "LeverConfig",
           "LOG_FORMATS", "OPT_LEVELS", "FineTuneConfig", "TTA_MODES", "BACKBONE_LR_SCALE",
           "FINETUNE_EPOCHS", "Sources", "steps_per_epoch", "run_facts", "facts_line"]

OPT_LEVELS = ("O0", "O1", "O2", "O3")
LOG_FORMATS = ("examples", "torchvision", "prefixed")  # classify/report.py; a model folder picks its own
TTA_MODES = ("none", "flip")
# The pretrained layers' lr over the new head's (--backbone-lr-scale) when a head starts fresh:
# measured (docs/own-data.md, "Measured"): GoogLeNet fine-tuned onto related classes, 12 epochs,
# 3 seeds: 1 -> 95.1 %, 0.5 -> 92.0, 0.3 -> 91.1, 0.1 -> 80.2, a frozen backbone 58.6.
BACKBONE_LR_SCALE = 1.0
FINETUNE_EPOCHS = 10  # with a fresh head and no --epochs; cosine to 0, no warm-up


@dataclass(frozen=True)
class FineTuneConfig:
    """``-t/--fine-tuning``, ``--freeze-backbone``, ``--backbone-lr-scale`` and which of the
    schedule's values came from flags (a fresh head gets fine-tuning defaults for the others)."""

    fresh_head: bool = False  # -t: the head starts fresh even when the class count matches
    freeze_backbone: bool = False  # only the head trains; the rest (BN statistics too) stays as loaded
    backbone_lr_scale: Optional[float] = None  # None: BACKBONE_LR_SCALE with a fresh head, else 1
    given: Tuple[str, ...] = ()  # the schedule values set by a flag (or the demo profile): epochs, lr, ...


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
    blurpool: bool = False  # --blurpool: a fixed blur before each strided conv (classify.blurpool)


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
    data_timeout: float = 300.0  # --data-timeout: seconds a shard read may give no byte (0: no limit)
    rrc_scale: Tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area range (--rrc-scale)
    rrc_ratio: Tuple[float, float] = (3 / 4, 4 / 3)  # and aspect range (--rrc-ratio)


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
    opt: str = "sgd"  # --opt: sgd | sgd_nesterov | rmsprop | adamw (classify.optim)
    lr_min: float = 0.0  # --lr-min: the cosine schedules' eta_min


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
class Sources:
    """Where the run's main values came from (the ``=>`` header, ``--check``): ``flag``,
    ``demo`` (the demo profile), ``data`` (fitted to the data: ``classify.resolve``) or ``recipe``."""

    image_size: str = "recipe"
    batch: str = "recipe"
    lr: str = "recipe"
    epochs: str = "recipe"
    augmentation: str = "recipe"
    data_note: str = ""  # what the data's fit saw, e.g. "median short side 64 px of 200 images"
    batch_note: str = ""  # the one line of a batch shrunk to fit the training set
    train_images: Optional[int] = None  # counted by the fit (small training sets only)


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
    sources: Sources = field(default_factory=Sources)

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


def steps_per_epoch(images: int, *, world_size: int, per_device_batch: int) -> int:
    """Full steps per epoch and process (the train sampler pads each shard to ``ceil(images /
    world_size)``; the loader drops a ragged last batch unless the shard is smaller than one)."""
    per_rank = -(-images // world_size)
    return max(1, per_rank // per_device_batch) if per_rank else 0


def run_facts(cfg: Config, *, train_images: Optional[int] = None) -> dict:
    """The run's main values and where each came from (``Sources``), as strings: the ``=>``
    header's second line (``classify.run``) and ``--check``'s keys after its first ones."""
    d, o, src = cfg.data, cfg.optim, cfg.sources
    images = train_images if train_images is not None else src.train_images
    steps = "-" if images is None else str(steps_per_epoch(images, world_size=cfg.world_size,
                                                           per_device_batch=o.per_device_batch))
    scale, ratio = d.rrc_scale, d.rrc_ratio
    augmentation = (f"random-resized-crop scale {scale[0]:g}-{scale[1]:g} ratio {ratio[0]:.3g}-{ratio[1]:.3g}, "
                    f"hflip" + (f", colour jitter {d.color_jitter:g}" if d.color_jitter else "")
                    + (f", {cfg.levers.auto_augment}" if cfg.levers.auto_augment else "")
                    + (f", random erase {cfg.levers.random_erase:g}" if cfg.levers.random_erase else ""))
    return {"image_size": str(d.image_size), "val_crop_size": str(d.val_crop_size or d.image_size),
            "val_resize": str(d.val_resize), "image_size_from": src.image_size, "data_seen": src.data_note or "-",
            "epochs": str(o.epochs), "epochs_from": src.epochs, "global_batch_from": src.batch,
            "steps_per_epoch": steps, "lr": f"{o.lr:g}", "lr_from": src.lr,
            "augmentation": augmentation, "augmentation_from": src.augmentation}


def facts_line(facts: dict) -> str:
    """``run_facts`` as the header's second line."""
    f = facts
    seen = f" ({f['data_seen']})" if f["data_seen"] != "-" and f["image_size_from"] == "data" else ""
    return (f"=> image size {f['image_size']} train / {f['val_crop_size']} val (resize {f['val_resize']}) "
            f"[{f['image_size_from']}{seen}], epochs {f['epochs']} [{f['epochs_from']}], "
            f"{f['steps_per_epoch']} steps/epoch [batch: {f['global_batch_from']}], lr {f['lr']} [{f['lr_from']}], "
            f"augmentation: {f['augmentation']} [{f['augmentation_from']}]")
