"""Train or evaluate AlexNet, VGG16, GoogLeNet or Inception-ResNet-v2 on ImageNet-style data.

    python main.py /data/imagenet -a vgg16 --epochs 120 --amp      # pytorch/examples style
    python main.py --data_path=/data/imagenet --arch alexnet      # ModelZoo style
    python main.py                                                # the built-in demo set
    torchrun --nproc_per_node 8 main.py /data/imagenet            # one process per device

Flags are the union of pytorch/examples' and the seed READMEs', with their aliases. A
recipe supplies defaults; every flag given on the command line wins.
"""

import argparse
import os
import sys
from typing import Optional

try:  # importing torch takes seconds: a Ctrl-C then is one line too, not a traceback
    import torch

    import models
    from classify.config import (CheckFlag, OneLineParser, add_finetune_flags, add_lever_flags, add_seed_flags,
                                 build_config, parse_int_list)
    from classify.errors import Interrupted, NonFiniteLoss, UserError
    from classify.schedules import SCHEDULES
except KeyboardInterrupt:
    print("error: interrupted while starting (SIGINT); nothing was written", file=sys.stderr, flush=True)
    sys.exit(130)


def get_args_parser() -> OneLineParser:
    p = OneLineParser(prog="main.py", description="Train/evaluate classic ImageNet CNNs (see README.md).")
    add = p.add_argument
    # data
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
    add("--no-index-cache", "--no_index_cache", action="store_true", help="scan the data folders on every start")
    add("--cache-dataset", "--cache_dataset", action="store_true",
        help="torchvision references' flag: use the index cache (on by default)")
    # model and recipe
    add("-a", "--arch", "--model", "--backbone", dest="arch", default=None,
        help=f"{' | '.join(models.list_models())} (default {models.DEFAULT_ARCH})")
    add("--recipe", default=None, help="hyperparameter set (default: the net's ModelZoo recipe)")
    # A network's training options (its ModelEntry.train_options) all go into one list.
    add("--aux-logits", "--aux_logits", dest="model_options", action="append_const", const="aux_logits",
        help="GoogLeNet: train with the aux heads")
    add("--pretrained", nargs="?", const="torchvision", default=None, metavar="PATH",
        help="start from weights: a file (ours, torchvision's or timm's), or torchvision's when no PATH "
        "(from the torch hub cache, downloaded there when online); another class count: a fresh head")
    # optimisation
    add("--epochs", "--epoch", "--max_epoch", type=int, default=None)
    add("--start-epoch", "--start_epoch", type=int, default=None)
    add("-b", "--batch-size", "--batch_size", dest="batch_size", type=int, default=None,
        help="global batch of this node (split over its devices)")
    add("--per_batch_size", "--per-batch-size", type=int, default=None, help="batch per device")
    add("--lr", "--learning-rate", "--learning_rate", dest="lr", type=float, default=None)
    add("--momentum", "--mom", type=float, default=None)
    add("--wd", "--weight-decay", "--weight_decay", dest="weight_decay", type=float, default=None)
    add("--label-smoothing", "--label_smooth_factor", "--label-smooth-factor", dest="label_smoothing",
        type=float, default=None)
    add("--label_smooth", "--label-smooth", type=int, default=None, help="0 | 1 (MindSpore style)")
    add("--lr-scheduler", "--lr_scheduler", default=None, help=" | ".join(SCHEDULES))
    add("--lr-epochs", "--lr_epochs", type=parse_int_list, default=None, help="milestones, e.g. 30,60,90")
    add("--lr-gamma", "--lr_gamma", type=float, default=None)
    add("--warmup-epochs", "--warmup_epochs", type=float, default=None)
    add("--seed", type=int, default=None)
    # precision
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
    # devices and distribution (torchrun/main_8p.py set RANK/WORLD_SIZE/LOCAL_RANK)
    add("--device", default="auto", help="auto | cpu | cuda | gpu | npu")
    add("--device-id", "--device_id", "--gpu", dest="device_id", type=int, default=None)
    add("--device-list", "--device_list", default=None,
        help="devices to use: one id = --device-id; several = one worker each (as main_8p.py)")
    add("--dist-url", "--dist_url", default=None, help="accepted for compatibility (torchrun sets it)")
    add("--dist-backend", "--dist_backend", default=None)
    add("--world-size", "--world_size", type=int, default=None)
    add("--rank", type=int, default=None)
    add("--multiprocessing-distributed", "--multiprocessing_distributed", action="store_true")
    add("--addr", default=None)
    add("--is_distributed", "--is-distributed", type=int, choices=(0, 1), default=None,
        help="MindSpore style: 1 = one worker per device (as --multiprocessing-distributed)")
    add("--benchmark", type=int, default=1, help="cudnn.benchmark 0|1")
    # logging, checkpoints, control
    add("-p", "--print-freq", "--print_freq", "--log_interval", dest="print_freq", type=int, default=None)
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
    add("--max-bad-images", "--max_bad_images", type=float, default=0.01, metavar="FRACTION",
        help="abort when more than this fraction of images is unreadable (default 0.01)")
    add("--nan-policy", "--nan_policy", default="stop", help="stop | skip | skip:N (non-finite loss)")
    add("--check", action=CheckFlag, help="print what a run with these flags would use (device, world size, "
        "batch, data layout, checkpoint) as key = value lines and exit: 0, or 1 with one error line")
    add_lever_flags(p)
    add_finetune_flags(p)
    add_seed_flags(p)
    return p


def check(argv, world_size: int, local_world: int, *, job: Optional[str] = None):
    """Resolve the config and check what the run reads first (data layout, checkpoint or
    weights file, output dir) without starting anything: the launcher calls it before it
    starts the workers (``classify.launch``), with its ``job`` (rendezvous) id. Returns the config."""
    from classify.check import inspect

    args = get_args_parser().parse_args(argv)
    if args.check:  # an abbreviation that main_8p.py did not take for --check: it would reach the workers
        raise UserError("write --check in full (main_8p.py looks for the whole word)")
    cfg = build_config(args, world_size, local_world)
    inspect(cfg, resolve_auto=False, job=job)  # --resume auto: each worker's run resolves it
    return cfg


def _wants_launcher(args) -> bool:
    """pytorch/examples: ``main.py --multiprocessing-distributed`` spawns one worker per device."""
    many = (args.multiprocessing_distributed or args.is_distributed == 1
            or len((args.device_list or "").split(",")) > 1)
    return many and "LOCAL_RANK" not in os.environ


def _launcher_flags(args) -> list:
    """The launcher flags main.py knows, as ``classify.launch`` reads them from its argv."""
    flags = [f"--device={args.device}"]
    for flag, value in (("--device-list", args.device_list), ("--device-id", args.device_id),
                        ("--world-size", args.world_size), ("--rank", args.rank), ("--addr", args.addr),
                        ("--dist-url", args.dist_url)):
        if value is not None:
            flags.append(f"{flag}={value}")
    return flags


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_args_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    try:
        if args.check:  # what this run would use, checked (classify/check.py): 0, or 1 with one error line
            from classify.check import check_run

            return check_run(lambda _worker_argv, world, local: build_config(args, world, local),
                             launcher_argv=_launcher_flags(args) if _wants_launcher(args) else None)
        if _wants_launcher(args):
            from classify.launch import launch

            return launch(argv, validate=check)
        from classify.distributed import dist_info_from_env
        from classify.run import run

        info = dist_info_from_env()
        run(build_config(args, world_size=info.world_size, local_world=info.local_world_size))
    except (UserError, NonFiniteLoss) as e:
        print(f"error: {'' if rank == 0 else f'[rank {rank}] '}{e}", file=sys.stderr, flush=True)
        return e.exit_code
    except Interrupted as e:
        if rank == 0:
            print(f"=> {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except torch.OutOfMemoryError:
        print(f"error: {'' if rank == 0 else f'[rank {rank}] '}out of memory on the device; use a smaller "
              "-b/--batch-size, --amp, or a smaller --image-size", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # before training (import, data scan, model) or a second Ctrl-C
        print("error: interrupted (SIGINT)", file=sys.stderr, flush=True)
        return 130
    except RuntimeError as e:
        from classify.distributed import lost_peer

        if not lost_peer(e):
            raise
        print(f"error: [rank {rank}] lost a peer process ({str(e).splitlines()[0][:160]}); torchrun's agent stops "
              "or restarts the job", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
