"""Every flag of ``main.py``, ``main_8p.py`` and the launchers, declared once, in groups by concern.

``get_args_parser()`` is ``main.py``'s parser (every flag with its aliases: pytorch/examples',
the ModelZoo seeds', MindSpore's, torchvision references' and timm's); ``launcher_parser()`` the
launcher's (``main_8p.py``, ``main.py --multiprocessing-distributed``: ``classify.launch``), which
shares the devices-and-distribution flags with it (``_device_flags``) and passes everything else
on to the workers; ``LAUNCHER_HELP`` what ``main_8p.py --help`` adds. A flag's value is checked
and resolved into the ``Config`` by ``classify.resolve``; nothing here reads a recipe.

Usage errors are one line (``OneLineParser``): exit 2, or with ``--check`` first exit 1 and
``error: ...`` (``CheckFlag``).
"""

import argparse
import math
from typing import Optional, Tuple

import models

from .schedules import SCHEDULES, WARMUP_METHODS
from .schema import BACKBONE_LR_SCALE, LOG_FORMATS, TTA_MODES
from .transforms import AUTO_AUGMENT

__all__ = ["get_args_parser", "launcher_parser", "OneLineParser", "CheckFlag", "parse_int_list", "finite_float",
           "SEED_NO_OPS", "TORCHVISION_NO_OPS", "OPTIMIZERS",
           "CHECK_EXIT_ERROR", "RDZV_TIMEOUT", "LAUNCHER_HELP", "wants_launcher", "launcher_flags"]

CHECK_EXIT_ERROR = 1  # --check's exit code for a mistake (a run's usage errors exit 2)
RDZV_TIMEOUT = 300  # seconds a node waits for the rendezvous endpoint and the other nodes (--rdzv-timeout)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage dump) with exit code 2, and never
    takes a prefix of a flag for the flag (``allow_abbrev=False``: torchvision references' ``--opt``
    is not ``--opt-level``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

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


def finite_float(text: str) -> float:
    """argparse ``type`` of every float flag: a finite number (``float()`` also takes nan and inf,
    which would train garbage or loop forever)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def parse_int_list(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(text).replace(" ", "").split(",") if x != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None


# ----------------------------------------------------------------------------- main.py


def get_args_parser() -> OneLineParser:
    """``main.py``'s parser: every flag and alias, in groups by concern."""
    p = OneLineParser(prog="main.py", description="Train/evaluate classic ImageNet CNNs (see README.md).")
    _data_flags(p.add_argument_group("data").add_argument)
    _model_flags(p.add_argument_group("model and recipe").add_argument)
    _optim_flags(p.add_argument_group("optimisation").add_argument)
    _precision_flags(p.add_argument_group("precision and speed").add_argument)
    _device_flags(p.add_argument_group("devices and distribution (torchrun/main_8p.py set RANK/WORLD_SIZE/"
                                       "LOCAL_RANK)").add_argument, launcher=False)
    _output_flags(p.add_argument_group("output, logging, checkpoints and resume").add_argument)
    _finetune_flags(p.add_argument_group("fine-tuning and evaluation (docs/own-data.md)").add_argument)
    add_lever_flags(p)
    add_seed_flags(p)
    add_torchvision_flags(p)
    return p


def _data_flags(add) -> None:
    add("data", nargs="?", default=None, help="root with train/ and val/ (or a split folder; "
        "or CIFAR-10 python batches); omit for the built-in demo set")
    add("--data", "--data_path", "--data-path", "--data_dir", "--data-dir", dest="data_opt", metavar="DIR",
        help="same as the positional DATA")
    add("--dummy", action="store_true", help="synthetic images, no files (= --data-backend dummy)")
    add("--data-backend", "--data_backend", default=None, metavar="NAME",
        help="pil (default: decode + augment in the loader workers) | gpu (workers read JPEG bytes, "
        "the device decodes and crops) | dummy")
    add("--dummy-size", "--dummy_size", type=parse_int_list, default=None, metavar="TRAIN,VAL",
        help="--dummy image counts (default 1281167,50000 as pytorch/examples)")
    add("-j", "--workers", type=int, default=None, help="data loader workers per process")
    add("--image-size", "--image_size", type=int, default=None, help="train crop / val crop size")
    add("--val-resize", "--val_resize", type=int, default=None, help="val resize before the centre crop")
    add("--num-classes", "--num_classes", type=int, default=None, help="default: classes in the data")
    add("--no-val", "--no_val", action="store_true", help="skip validation (train only)")
    add("--index-cache", "--index_cache", default=None, metavar="DIR",
        help="where the file index of each data folder is kept (default $XDG_CACHE_HOME/classify/index)")
    add("--data-timeout", "--data_timeout", type=finite_float, default=None, metavar="SECONDS",
        help="a shard read (pipe: command, URL) that gives no data this long is an error naming the shard "
        "(default 300; 0: no limit)")
    add("--no-index-cache", "--no_index_cache", action="store_true", help="scan the data folders on every start")
    add("--cache-dataset", "--cache_dataset", action="store_true",
        help="torchvision references' flag: use the index cache (on by default)")


def _model_flags(add) -> None:
    add("-a", "--arch", "--model", "--backbone", dest="arch", default=None,
        help=f"{' | '.join(models.list_models())} (default {models.DEFAULT_ARCH})")
    add("--recipe", default=None, help="hyperparameter set (default: the net's ModelZoo recipe)")
    # A network's training options (its ModelEntry.train_options) all go into one list.
    add("--aux-logits", "--aux_logits", dest="model_options", action="append_const", const="aux_logits",
        help="GoogLeNet: train with the aux heads")
    add("--pretrained", nargs="?", const="torchvision", default=None, metavar="PATH",
        help="start from weights: a file (ours, torchvision's or timm's), or torchvision's when no PATH "
        "(from the torch hub cache, downloaded there when online); another class count: a fresh head")


def _optim_flags(add) -> None:
    add("--epochs", "--epoch", "--max_epoch", type=int, default=None,
        help="epochs to train (default: the recipe's; the demo set's short schedule without a data path)")
    add("--start-epoch", "--start_epoch", type=int, default=None,
        help="the epoch number to start counting from (default 0; --resume restores it)")
    add("-b", "--batch-size", "--batch_size", dest="batch_size", type=int, default=None,
        help="global batch of this node (split over its devices)")
    add("--per_batch_size", "--per-batch-size", type=int, default=None, help="batch per device")
    add("--lr", "--learning-rate", "--learning_rate", dest="lr", type=finite_float, default=None,
        help="peak learning rate (default: the recipe's, scaled linearly when the batch differs from its batch)")
    add("--momentum", "--mom", type=finite_float, default=None, help="SGD momentum (default: the recipe's)")
    add("--wd", "--weight-decay", "--weight_decay", dest="weight_decay", type=finite_float, default=None,
        help="weight decay (default: the recipe's)")
    add("--label-smoothing", "--label_smooth_factor", "--label-smooth-factor", dest="label_smoothing",
        type=finite_float, default=None, help="label smoothing of the training loss, in [0, 1) (default: the recipe's)")
    add("--label_smooth", "--label-smooth", type=int, default=None, help="0 | 1 (MindSpore style)")
    add("--lr-scheduler", "--lr_scheduler", default=None,
        help=f"{' | '.join(SCHEDULES)} (torchvision references' steplr | cosineannealinglr | exponentiallr: "
        "their per-epoch meaning, counted from the warm-up's end)")
    add("--lr-epochs", "--lr_epochs", type=parse_int_list, default=None, help="milestones, e.g. 30,60,90")
    add("--lr-gamma", "--lr_gamma", type=finite_float, default=None,
        help="lr factor at each milestone of the step schedule (default: the recipe's)")
    add("--warmup-epochs", "--warmup_epochs", type=finite_float, default=None,
        help="epochs of lr warm-up (default: the recipe's)")
    add("--seed", type=int, default=None, help="random seed; each process adds its rank (default: the recipe's)")


def _precision_flags(add) -> None:
    add("--amp", "--apex", action="store_true", help="mixed precision (on accelerators the recipe's)")
    add("--opt-level", "--apex-opt-level", "--opt_level", dest="opt_level", default=None, help="O0..O3")
    add("--loss-scale", "--loss_scale_value", "--loss_scale", dest="loss_scale", default=None,
        help="static loss scale N, or 'dynamic'")
    add("--amp-dtype", "--amp_dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
        help="autocast dtype; auto = bf16 where supported, else fp16; fp32 turns autocast off "
             "(the default on CPUs with native bf16 is bf16)")
    # speed (see tools/bench.py)
    add("--channels-last", "--channels_last", action=argparse.BooleanOptionalAction, default=None,
        help="NHWC memory format (default: on for cuda and cpu)")
    add("--compile", action="store_true", help="torch.compile the model (slow start, faster steps)")


def _device_flags(add, *, launcher: bool) -> None:
    """Devices and distribution. The first seven are read by main.py and by the launcher alike
    (the launcher takes them off the workers' command line and passes ``--device`` on); the
    launcher alone also takes ``--visible_devices`` (and reads the list as ids), main.py alone
    ``--gpu`` and the rest."""
    add("--device", default="auto", help="auto | cpu | cuda | gpu | npu")
    add("--device-id", "--device_id", *(() if launcher else ("--gpu",)), dest="device_id", type=int, default=None,
        help="the device of a one-device run (with main_8p.py: the first device, without --device-list)")
    add("--device-list", "--device_list", *(("--visible_devices", "--visible-devices") if launcher else ()),
        dest="device_list", type=parse_int_list if launcher else None, default=None,
        help="devices to use: one id = --device-id; several = one worker each (as main_8p.py)")
    add("--dist-url", "--dist_url", default=None, help="accepted for compatibility (torchrun sets it)")
    add("--world-size", "--world_size", type=int, default=None,
        help="number of nodes (pytorch/examples' meaning for the launcher; under torchrun its environment's)")
    add("--rank", type=int, default=None, help="this node's rank (with --world-size)")
    add("--addr", default=None, help="the first node's address (the rendezvous host)")
    if launcher:
        return
    add("--dist-backend", "--dist_backend", default=None,
        help="process group backend (default: nccl on cuda, hccl on npu, gloo on cpu)")
    add("--multiprocessing-distributed", "--multiprocessing_distributed", action="store_true",
        help="start one worker per device through the launcher (as main_8p.py)")
    add("--is_distributed", "--is-distributed", type=int, choices=(0, 1), default=None,
        help="MindSpore style: 1 = one worker per device (as --multiprocessing-distributed)")
    add("--benchmark", type=int, default=1, help="cudnn.benchmark 0|1")


def _output_flags(add) -> None:
    add("-p", "--print-freq", "--print_freq", "--log_interval", dest="print_freq", type=int, default=None,
        help="a step line every N steps (default 10)")
    add("--output-dir", "--output_dir", "--ckpt_path", "--ckpt-path", "--log_path", dest="output_dir",
        default=None, help="checkpoints, metrics.jsonl, summary.json (default: current dir)")
    add("--force-output-dir", "--force_output_dir", action="store_true",
        help="use the output dir even if a job on another host holds its lock (.classify.lock)")
    add("--ckpt-interval", "--ckpt_interval", type=int, default=None, help="also save every N steps")
    add("--keep-checkpoints", "--keep_checkpoints", type=int, default=None, metavar="N",
        help="also keep the N newest epoch checkpoints, checkpoint-<epoch>.pth.tar (default 0)")
    add("--resume", default=None, metavar="PATH", help="continue from a checkpoint file, or auto: the newest "
        "in --output-dir (only when its run has this run's data, arch, recipe, classes, image size, batch)")
    add("--fresh", action="store_true", help="start over in --output-dir: the run there moves to "
        "OUTPUT_DIR/previous-<time>/ (nothing deleted)")
    add("-e", "--evaluate", action="store_true", help="evaluate only (with --resume/--pretrained)")
    add("--stop-step-num", "--stop_step_num", type=int, default=None, help="stop after N training steps")
    add("--prof", action="store_true", help="profile a few steps with torch.profiler, then stop")
    add("--tensorboard", action="store_true", help="write TensorBoard scalars to OUTPUT_DIR/tensorboard")
    add("--max-bad-images", "--max_bad_images", type=finite_float, default=0.01, metavar="FRACTION",
        help="abort when more than this fraction of images is unreadable (default 0.01)")
    add("--nan-policy", "--nan_policy", default="stop", help="stop | skip | skip:N (non-finite loss)")
    add("--check", action=CheckFlag, help="print what a run with these flags would use (device, world size, "
        "batch, data layout, checkpoint) as key = value lines and exit: 0, or 1 with one error line")


def _finetune_flags(add) -> None:
    """Fine-tuning from pretrained weights and evaluation (checked in ``classify.resolve``)."""
    add("-t", "--fine-tuning", "--fine_tuning", dest="fine_tuning", action="store_true",
        help="the seeds' fine-tuning: start from --pretrained (torchvision's when no PATH) with a fresh head")
    add("--freeze-backbone", "--freeze_backbone", action="store_true",
        help="train the head only (a linear probe): every other layer, BN statistics too, stays as loaded")
    add("--backbone-lr-scale", "--backbone_lr_scale", type=finite_float, default=None, metavar="X",
        help=f"lr of the pretrained layers = X x --lr, in [0, 1] (default {BACKBONE_LR_SCALE:g}; "
        "measured in docs/own-data.md)")
    add("--tta", default=None, metavar="MODE", help=f"test-time augmentation of every evaluation: "
        f"{' | '.join(TTA_MODES)} (default none; flip: mean of the image's and its mirror's logits)")


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
    add("--npu", dest="device_id", type=int, metavar="N", help="= --device-id (the NPU/GPU id of a 1-device run)",
        **alias)
    add("--pm", "--precision-mode", "--precision_mode", dest="opt_level", metavar="LEVEL", help="= --opt-level",
        **alias)
    add("--static-loss-scale", "--static_loss_scale", "--loss-scale-value", dest="loss_scale", metavar="X",
        help="= --loss-scale", **alias)
    add("--warm_up_epochs", "--warm-up-epochs", "--warmup", dest="warmup_epochs", type=finite_float, metavar="N",
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


# ----------------------------------------------------------------------------- torchvision references' flags
# The flags of torchvision's references/classification/train.py that the groups above do not
# declare (docs/torchvision-flags.md maps every one of them). Each has its meaning here, or is
# accepted without effect (TORCHVISION_NO_OPS), or is refused by classify.resolve with one line.

OPTIMIZERS = ("sgd", "sgd_nesterov", "rmsprop", "adamw")  # classify/optim.py builds each

TORCHVISION_NO_OPS = {
    "--use-v2": "the transforms are torchvision's v2 already",
    "--transformer-embedding-decay": "none of these networks has a transformer embedding; --norm-weight-decay and "
                                     "--bias-weight-decay split the weight decay",
}


def add_torchvision_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("torchvision references' flags (docs/torchvision-flags.md)")
    add = g.add_argument
    add("--opt", default=None, metavar="NAME", help=f"the optimizer: {' | '.join(OPTIMIZERS)} (default sgd; "
        "rmsprop with eps 0.0316 and alpha 0.9, adamw with its default betas, as the references)")
    add("--lr-min", "--lr_min", type=finite_float, default=None, metavar="LR",
        help="the lowest lr of cosine/cosineannealinglr (its eta_min; default 0)")
    add("--weights", default=None, metavar="NAME", help="a torchvision weights name of the arch (e.g. IMAGENET1K_V1, "
        "DEFAULT, or VGG16_Weights.IMAGENET1K_V1) = --pretrained (torchvision's weights from the local cache)")
    add("--interpolation", default=None, metavar="MODE",
        help="bilinear (the only resize mode here, torchvision's default; others are refused)")
    add("--backend", default=None, metavar="pil|tensor", help="accepted, no effect: images decode with PIL in the "
        "loader workers whichever is given (--data-backend gpu decodes on the device)")
    for flag, why in TORCHVISION_NO_OPS.items():
        kind = dict(action="store_true") if flag == "--use-v2" else dict(default=None, metavar="X")
        add(flag, flag.replace("-", "_").replace("__", "--"), dest=f"noop_{flag.strip('-').replace('-', '_')}",
            help=f"accepted, no effect: {why}", **kind)


# ----------------------------------------------------------------------------- levers (issue #14)
# The training levers of torchvision's references and timm, with their flag names (timm's as
# aliases). Each one is off by default, and off it changes nothing in the seeds' step.


def add_lever_flags(parser: argparse.ArgumentParser) -> None:
    """The levers' flags, in their own group of ``main.py --help``."""
    g = parser.add_argument_group("beyond the seed recipes (torchvision / timm flag names)")
    add = g.add_argument
    add("--grad-accum-steps", "--grad_accum_steps", type=int, default=None, metavar="N",
        help="accumulate the gradients of N batches per optimizer step (default 1)")
    add("--optimizer-batch-size", "--optimizer_batch_size", type=int, default=None, metavar="B",
        help="accumulate to this global batch per optimizer step (a multiple of the global batch)")
    add("--clip-grad-norm", "--clip_grad_norm", "--clip-grad", dest="clip_grad_norm", type=finite_float, default=None,
        metavar="X", help="clip the gradients' global L2 norm to X (with AMP: unscaled first)")
    add("--model-ema", "--model_ema", action="store_true", help="keep an EMA of the weights, evaluated every epoch")
    add("--model-ema-decay", "--model_ema_decay", type=finite_float, default=None, metavar="D",
        help="EMA decay per update (default 0.99998, adjusted as torchvision's)")
    add("--model-ema-steps", "--model_ema_steps", type=int, default=None, metavar="N",
        help="optimizer steps between EMA updates (default 32)")
    add("--model-ema-warmup", "--model_ema_warmup", action="store_true",
        help="timm's EMA decay warm-up: min(decay, 1 - (1 + t)^-2/3) at the t-th update")
    add("--mixup-alpha", "--mixup_alpha", "--mixup", dest="mixup_alpha", type=finite_float, default=None, metavar="A",
        help="MixUp with Beta(A, A) on each batch (default off)")
    add("--cutmix-alpha", "--cutmix_alpha", "--cutmix", dest="cutmix_alpha", type=finite_float, default=None, metavar="A",
        help="CutMix with Beta(A, A) on each batch (default off)")
    add("--mixup-switch-prob", "--mixup_switch_prob", type=finite_float, default=None, metavar="P",
        help="with both: CutMix for a batch with probability P, else MixUp (default 0.5)")
    add("--norm-weight-decay", "--norm_weight_decay", type=finite_float, default=None, metavar="X",
        help="weight decay of normalisation layers' parameters (default: --weight-decay)")
    add("--bias-weight-decay", "--bias_weight_decay", type=finite_float, default=None, metavar="X",
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
    add("--rrc-scale", "--rrc_scale", "--scale", dest="rrc_scale", default=None, metavar="MIN,MAX",
        help="RandomResizedCrop's range of the crop's area, a fraction of the image's (timm's --scale; default "
             "0.08,1, or 0.25,1 when the image size is fitted to small images)")
    add("--rrc-ratio", "--rrc_ratio", "--ratio", dest="rrc_ratio", default=None, metavar="MIN,MAX",
        help="RandomResizedCrop's range of the crop's aspect ratio (timm's --ratio; default 0.75,1.3333)")
    add("--auto-augment", "--auto_augment", "--aa", dest="auto_augment", default=None, metavar="POLICY",
        help=f"{' | '.join(AUTO_AUGMENT)} (torchvision v2 policies, pil backend)")
    add("--ra-magnitude", "--ra_magnitude", type=int, default=None, metavar="M", help="RandAugment magnitude (9)")
    add("--augmix-severity", "--augmix_severity", type=int, default=None, metavar="S", help="AugMix severity (3)")
    add("--random-erase", "--random_erase", "--reprob", dest="random_erase", type=finite_float, default=None, metavar="P",
        help="random erasing probability (default 0)")
    add("--ra-sampler", "--ra_sampler", action="store_true", help="repeated augmentation sampler")
    add("--ra-reps", "--ra_reps", type=int, default=None, metavar="R", help="repetitions per image (default 3)")
    add("--aug-repeats", "--aug_repeats", type=int, default=None, metavar="R",
        help="timm: --ra-sampler --ra-reps R (0: off)")
    add("--progressive-resize", "--progressive_resize", default=None, metavar="START:END[:FROM:TO]",
        help="FFCV-style: the train size ramps from START to END between epochs FROM and TO (default: the run)")
    add("--blurpool", action=argparse.BooleanOptionalAction, default=None,
        help="anti-aliased downsampling: a fixed 3x3 blur before each strided conv (FFCV, Composer); "
        "no parameters, no new state-dict keys (the <net>_fast recipes turn it on)")
    add("--lr-warmup-epochs", "--lr_warmup_epochs", dest="warmup_epochs", type=finite_float, default=None, metavar="E",
        help="= --warmup-epochs")
    add("--lr-warmup-method", "--lr_warmup_method", default=None, metavar="NAME",
        help=f"{' | '.join(WARMUP_METHODS)} (default linear)")
    add("--lr-warmup-decay", "--lr_warmup_decay", type=finite_float, default=None, metavar="D",
        help="warm-up start factor: linear from D x lr, constant at D x lr (default: linear from 0, constant 0.01)")


# ----------------------------------------------------------------------------- the launcher


class _LauncherParser(OneLineParser):
    def error(self, message: str):  # one line, as every other launcher error (main_8p.py prints it)
        from .errors import UserError

        raise UserError(f"{message}; see main_8p.py --help")


def launcher_parser() -> OneLineParser:
    """The launcher's flags (``classify.launch``); everything else goes to the workers."""
    # No prefix matching: a worker flag must never be taken for a launcher flag (e.g. --dev).
    p = _LauncherParser(add_help=False, allow_abbrev=False)
    add = p.add_argument
    add("--nproc_per_node", "--nproc-per-node", type=int, default=None,
        help="workers on this node (default: one per listed or visible device; 2 on cpu)")
    add("--max-restarts", "--max_restarts", default=None, help="torchrun restarts the workers up to N times")
    # torchrun's rendezvous flags (multi-node, elastic); the scheduler's PET_*/SLURM_* when absent
    add("--nnodes", default=None, help="N or MIN:MAX nodes (elastic)")
    add("--node-rank", "--node_rank", dest="node_rank", type=int, default=None, help="this node's rank (static)")
    add("--rdzv-backend", "--rdzv_backend", dest="rdzv_backend", default=None, help="c10d (default) | static")
    add("--rdzv-endpoint", "--rdzv_endpoint", dest="rdzv_endpoint", default=None, help="HOST:PORT of the rendezvous")
    add("--rdzv-id", "--rdzv_id", dest="rdzv_id", default=None, help="the job id, the same on every node")
    add("--rdzv-conf", "--rdzv_conf", dest="rdzv_conf", default=None, help="torchrun's K=V,... rendezvous options")
    add("--rdzv-timeout", "--rdzv_timeout", dest="rdzv_timeout", type=int, default=RDZV_TIMEOUT,
        help=f"seconds to wait for the endpoint and the other nodes (default {RDZV_TIMEOUT})")
    _device_flags(add, launcher=True)
    return p


LAUNCHER_HELP = ("\nmain_8p.py also takes: --nproc_per_node N, --device-list/--visible_devices 0,1,..., "
                 "--device-id N (the first device, without a list), --max-restarts N; torchrun's rendezvous flags "
                 "--nnodes N|MIN:MAX, --rdzv-backend c10d|static, --rdzv-endpoint HOST:PORT, --rdzv-id JOB, "
                 "--node-rank R (static), --rdzv-conf K=V,..., --rdzv-timeout S (default "
                 f"{RDZV_TIMEOUT} s; PET_* and SLURM_* variables when absent); --world-size/--rank are "
                 "nodes/node rank as in pytorch/examples. --check: print what the run would use and exit.")


def wants_launcher(*, multiprocessing_distributed: bool, is_distributed: Optional[int], device_list: Optional[str],
                   environ) -> bool:
    """pytorch/examples: ``main.py --multiprocessing-distributed`` spawns one worker per device."""
    many = multiprocessing_distributed or is_distributed == 1 or len((device_list or "").split(",")) > 1
    return many and "LOCAL_RANK" not in environ


def launcher_flags(*, device: str, device_list: Optional[str] = None, device_id: Optional[int] = None,
                   world_size: Optional[int] = None, rank: Optional[int] = None, addr: Optional[str] = None,
                   dist_url: Optional[str] = None) -> list:
    """The launcher flags main.py knows, as ``classify.launch`` reads them from its argv."""
    flags = [f"--device={device}"]
    for flag, value in (("--device-list", device_list), ("--device-id", device_id), ("--world-size", world_size),
                        ("--rank", rank), ("--addr", addr), ("--dist-url", dist_url)):
        if value is not None:
            flags.append(f"{flag}={value}")
    return flags
