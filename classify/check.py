"""``python main.py --check ...`` / ``python main_8p.py --check ...``: what a run with those
flags would use, resolved and checked without starting it.

The check resolves exactly what the run would (the config of ``classify.resolve``, the device
of ``classify.devices``, for ``main_8p.py`` the workers and devices of ``classify.launch``),
checks what the run reads before it spends minutes building a model (the data layout, the
checkpoint or weights file, the output dir and whether the run may use it: ``classify.rundir``),
and prints one ``key = value`` line per
item on stdout, in this order (``KEYS``)::

    arch = vgg16
    network = Vgg16_ID1630_for_PyTorch  # the arch's seed network name (its registry entry; CaseName
                                        # of the models/<net>/ launcher scripts)
    recipe = vgg16_modelzoo
    mode = train                        # train | evaluate (-e)
    device = cuda                       # cpu | cuda | npu (--device auto resolved)
    device_count = 8                    # visible devices of that kind (cpu: CPUs of this process)
    devices = 0,1,2,3,4,5,6,7           # the ids the run uses; "-" on cpu
    world_size = 8                      # processes in all (nodes x nproc_per_node)
    nproc_per_node = 8                  # processes on this node
    global_batch = 256
    per_device_batch = 32
    data = folder train+val             # folder train+val | folder train only | folder val only
                                        # | shards train+val | shards train only | shards val only
                                        # | cifar10 | demo | dummy
    data_path = /data/imagenet          # absolute; "none" for dummy; demo: its cache folder, with
                                        # " (generated on first use)" while it does not exist yet
    checkpoint = none                   # none | PATH (--resume) | PATH (--resume auto)
                                        # | none (--resume auto: no checkpoint in DIR) | none (--fresh)
                                        # | PATH (--pretrained)
    output_dir = /abs/output/dir
    precision = bf16                    # the run's mixed precision (amp bf16 | fp16 | off ...)
    image_size = 64                     # train crop; then the val crop and the val resize
    val_crop_size = 64
    val_resize = 73
    image_size_from = data              # where it came from: flag | demo | data | recipe
    data_seen = median short side 64 px of 200 images   # what the fit to the data read ("-": nothing)
    epochs = 90
    epochs_from = recipe
    global_batch_from = data            # data: the recipe's batch shrunk to fit the training set
    steps_per_epoch = 4                 # "-" when the training set is not counted (large or not a folder)
    lr = 0.0025
    lr_from = data
    augmentation = random-resized-crop scale 0.25-1 ratio 0.75-1.33, hflip
    augmentation_from = data

and exits 0; a mistake is one line ``error: ...`` on stderr and exit code 1 (argparse's
usage errors too, for the flags after ``--check``: put it first, as the launcher scripts do).
Nothing is created (no output dir, no demo set, no model, no process group, no worker).
What the run reads file by file (an empty class folder, a corrupt image or checkpoint) stays
the run's to find: the check looks at folders and file names only, so that it takes a
second on ImageNet too.
"""

import sys
from typing import Callable, Dict, List, Optional

import models

from .cli import CHECK_EXIT_ERROR as EXIT_ERROR  # the check's exit code for a mistake
from .schema import Config, run_facts
from .errors import UserError

__all__ = ["KEYS", "EXIT_ERROR", "check_run", "inspect", "single_process_devices",
           "launcher_devices", "format_report", "report"]

KEYS = ("arch", "network", "recipe", "mode", "device", "device_count", "devices", "world_size",
        "nproc_per_node", "global_batch", "per_device_batch", "data", "data_path", "checkpoint", "output_dir",
        # the run's values and where each came from (classify.schema.run_facts; the run's "=>" header)
        "precision", "image_size", "val_crop_size", "val_resize", "image_size_from", "data_seen", "epochs",
        "epochs_from", "global_batch_from", "steps_per_epoch", "lr", "lr_from", "augmentation", "augmentation_from")


# ----------------------------------------------------------------------------- devices


def single_process_devices(cfg: Config) -> Dict[str, str]:
    """``main.py``: one process (world size from the environment, as under torchrun, else 1)."""
    from . import devices
    from .distributed import dist_info_from_env

    kind = devices.resolve_kind(cfg.device)
    info = dist_info_from_env()
    count = devices.device_count(kind)
    ids = "-"
    if kind != "cpu":
        index = info.local_rank if info.enabled else (cfg.device_id or 0)
        devices.check_device_index(kind, index)  # before the run makes the same check
        ids = str(index)
    return {"device": kind, "device_count": str(count), "devices": ids,
            "world_size": str(cfg.world_size), "nproc_per_node": str(info.local_world_size)}


def launcher_devices(plan) -> Dict[str, str]:
    """``main_8p.py`` / ``main.py --multiprocessing-distributed``: ``classify.launch.plan``'s."""
    from . import devices

    return {"device": plan.kind, "device_count": str(devices.device_count(plan.kind)),
            "devices": ",".join(map(str, plan.devices)) if plan.devices else "-",
            "world_size": str(plan.world_size), "nproc_per_node": str(plan.nproc)}


# ----------------------------------------------------------------------------- all of it


def inspect(cfg: Config, *, resolve_auto: bool = True, job: Optional[str] = None) -> Dict[str, str]:
    """The pre-flight of ``cfg``, composed of its owners' checks (one-line ``UserError``): the
    data (``classify.data.check_data``), the output dir (``classify.outdir``) and whether the
    run may use it (``classify.rundir.claim_run``, with the run's ``classify.identity``), what
    it starts from (``classify.checkpoint.check_start``, ``classify.pretrained.check_pretrained``).
    Returns the report's lines other than the devices'. ``resolve_auto=False``: leave ``--resume
    auto`` to the run. A node joining its own ``job`` (the dir's lock is that job's: another node
    of it, or an elastic join, is running) continues that run, whatever its global batch is now."""
    from .checkpoint import check_start
    from .data import check_data
    from .identity import identity
    from .lock import held_by
    from .outdir import prepare_output_dir
    from .pretrained import check_pretrained
    from .rundir import claim_run

    d, out = cfg.data, cfg.output
    data = check_data(kind=d.kind, path=d.path, num_classes=d.num_classes, no_val=d.no_val, evaluate=out.evaluate,
                      data_timeout=d.data_timeout)
    output_dir = prepare_output_dir(out.output_dir)
    resume = out.resume
    if job is None or not held_by(out.output_dir, job):  # else the job's workers claim it as a restart generation
        ident = identity(data_root=data.root, arch=cfg.arch, recipe=cfg.recipe, num_classes=data.num_classes,
                         image_size=d.image_size, global_batch=cfg.optim.batch_size)
        _, held = claim_run(out.output_dir, ident, resume=out.resume, fresh=out.fresh, epochs=cfg.optim.epochs,
                            writes=not (out.evaluate or cfg.loop.prof))
        if held is not None and held.auto:  # an unfinished run there: the same command continues it
            resume = "auto"
    checkpoint = check_start(output_dir=out.output_dir, resume=resume, evaluate=out.evaluate, fresh=out.fresh,
                             pretrained=lambda: out.pretrained and check_pretrained(out.pretrained, cfg.arch) or None,
                             resolve_auto=resolve_auto)
    return {**run_facts(cfg), "arch": cfg.arch, "network": models.get_model_entry(cfg.arch).network,
            "recipe": cfg.recipe,
            "mode": "evaluate" if out.evaluate else "train",
            "global_batch": str(cfg.optim.batch_size), "per_device_batch": str(cfg.optim.per_device_batch),
            "data": data.layout, "data_path": data.path, "checkpoint": checkpoint, "output_dir": str(output_dir)}


def _precision(cfg: Config, kind: str) -> str:
    """The run's mixed precision on a device of ``kind`` (``classify.amp``, as the header's ``amp``)."""
    import torch

    from .amp import resolve_amp

    p = cfg.precision
    return resolve_amp(torch.device(kind), asked=p.amp, opt_level=p.opt_level, recipe_opt_level=p.recipe_opt_level,
                       loss_scale=p.loss_scale, dtype=p.amp_dtype).name


def format_report(values: Dict[str, str]) -> str:
    return "".join(f"{key} = {values[key]}\n" for key in KEYS)


def check_run(make_config: Callable[[List[str], int, int], Config], *,
              launcher_argv: Optional[List[str]] = None) -> int:
    """The check of one run. ``make_config(worker_argv, world_size, local_world)`` resolves its
    config (main.py's parser and ``build_config``). ``launcher_argv`` None: one ``main.py``
    process (world size from the environment, else 1); else the launcher's flags
    (``main_8p.py``, ``main.py --multiprocessing-distributed``): ``classify.launch.plan`` of them
    gives the workers, their devices and their flags."""

    def resolve():
        if launcher_argv is None:
            from .distributed import dist_info_from_env

            info = dist_info_from_env()
            cfg = make_config([], info.world_size, info.local_world_size)
            values = {**inspect(cfg), **single_process_devices(cfg)}
            return {**values, "precision": _precision(cfg, values["device"])}
        from .launch import plan

        p = plan(launcher_argv)
        cfg = make_config(p.worker_args, p.world_size, p.nproc)
        values = {**inspect(cfg), **launcher_devices(p)}
        return {**values, "precision": _precision(cfg, values["device"])}

    try:
        return report(resolve)
    except SystemExit as e:  # a usage error of the workers' flags, printed by argparse (CheckFlag)
        return e.code if isinstance(e.code, int) else EXIT_ERROR


def report(resolve) -> int:
    """Run ``resolve()`` (-> the report's values), print them; 0, or 1 with one ``error:`` line."""
    try:
        values = resolve()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except OSError as e:  # e.g. a data folder this user may not read
        where = f" '{e.filename}'" if e.filename else ""
        print(f"error: cannot read{where}: {e.strerror or e}; check the path and its permissions",
              file=sys.stderr, flush=True)
        return EXIT_ERROR
    sys.stdout.write(format_report(values))
    sys.stdout.flush()
    return 0
