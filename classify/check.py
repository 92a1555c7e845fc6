"""``python main.py --check ...`` / ``python main_8p.py --check ...``: what a run with those
flags would use, resolved and checked without starting it.

The check resolves exactly what the run would (the config of ``classify.config``, the device
of ``classify.devices``, for ``main_8p.py`` the workers and devices of ``classify.launch``),
checks what the run reads before it spends minutes building a model (the data layout, the
checkpoint or weights file, the output dir and whether the run may use it: ``classify.rundir``),
and prints one ``key = value`` line per
item on stdout, in this order (``KEYS``)::

    arch = vgg16
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

and exits 0; a mistake is one line ``error: ...`` on stderr and exit code 1 (argparse's
usage errors too, for the flags after ``--check``: put it first, as the launcher scripts do).
Nothing is created (no output dir, no demo set, no model, no process group, no worker).
What the run reads file by file (an empty class folder, a corrupt image or checkpoint) stays
the run's to find: the check looks at folders and file names only, so that it takes a
second on ImageNet too.
"""

import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .config import CHECK_EXIT_ERROR as EXIT_ERROR  # the check's exit code for a mistake
from .config import Config
from .errors import CheckpointError, DataError, UserError

__all__ = ["KEYS", "EXIT_ERROR", "check_run", "inspect", "single_process_devices",
           "launcher_devices", "format_report", "report"]

KEYS = ("arch", "recipe", "mode", "device", "device_count", "devices", "world_size", "nproc_per_node",
        "global_batch", "per_device_batch", "data", "data_path", "checkpoint", "output_dir")


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


# ----------------------------------------------------------------------------- data


def _class_dirs(folder: Path) -> List[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _data(cfg: Config) -> Tuple[str, str, bool]:
    """(layout, absolute path, has a val split). The layout checks of ``classify.data`` (the
    files themselves are read by the run: an empty class folder is its error)."""
    from .data import find_cifar_root, resolve_splits
    from .data.folder import check_same_classes

    d = cfg.data
    if d.kind == "dummy":
        return "dummy", "none", True
    if d.kind == "demo":
        from .data.demo import default_demo_root, is_complete

        root = default_demo_root()
        ready = is_complete(root)
        if not ready:
            _demo_writable(root)
        return "demo", f"{root.absolute()}{'' if ready else ' (generated on first use)'}", True
    from .data.shards import is_shard_source

    if is_shard_source(d.path):
        return _shard_layout(d.path)
    cifar = find_cifar_root(d.path)
    if cifar is not None:
        if not (cifar / "test_batch").is_file():
            raise DataError(f"'{cifar}' has no test_batch; extract the full cifar-10-python.tar.gz there")
        return "cifar10", str(cifar.absolute()), True
    train, val = resolve_splits(d.path)
    classes = {}
    for split in (train, val):
        if split is not None:
            classes[split] = _class_dirs(split)
            if not classes[split]:
                raise DataError(f"no class folders in '{split}'; expected {split}/<class>/*.jpg")
    if train is not None and val is not None:
        check_same_classes(classes[train], classes[val])
    layout = "folder train+val" if train and val else ("folder train only" if train else "folder val only")
    return layout, str(Path(d.path).expanduser().absolute()), val is not None


def _shard_layout(source: str) -> Tuple[str, str, bool]:
    """WebDataset shards (``classify.data.shards``): their index names the splits."""
    from .data.shards import open_shards

    train, val, _ = open_shards(source)
    return f"shards {'train+val' if train and val else ('train only' if train else 'val only')}", source, \
        val is not None


def _demo_writable(root: Path) -> None:
    """The demo set the run would generate: a folder it can create (``ensure_demo_data``'s
    errors, found without creating anything)."""
    from .data.demo import demo_unwritable

    if root.is_dir() and any(root.iterdir()):
        from .data.demo import ensure_demo_data

        ensure_demo_data(root)  # refuses a half-written folder at once, creating nothing
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(demo_unwritable(root, f"'{existing}' is a file"))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(demo_unwritable(root, f"no write access to '{existing}'"))


def _check_mode(cfg: Config, layout: str, has_val: bool) -> None:
    """The split checks ``classify.run`` makes once the model is built."""
    from .data import check_splits

    check_splits(path=cfg.data.path, has_train=not layout.endswith("val only"), has_val=has_val and not cfg.data.no_val,
                 evaluate=cfg.output.evaluate)


# ----------------------------------------------------------------------------- checkpoint


def _require_file(value: str, flag: str) -> Path:
    from .checkpoint import BEST, LATEST, folder_given

    path = Path(value).expanduser()
    if path.is_file():
        return path.absolute()
    if path.is_dir():
        raise CheckpointError(folder_given(value, flag))
    if path.exists():
        raise CheckpointError(f"checkpoint '{value}' is not a file; pass a checkpoint file to {flag}")
    if flag == "--pretrained":
        raise CheckpointError(f"weights file '{value}' not found; pass an existing file to --pretrained")
    if path.name == BEST and (path.parent / LATEST).is_file():
        raise CheckpointError(f"checkpoint '{value}' not found ({BEST} is written when an epoch beats 0% Acc@1); "
                              f"its folder holds {LATEST}, the last epoch's weights: pass that to --resume "
                              "(--pth_path of test/train_eval_*.sh)")
    raise CheckpointError(f"checkpoint '{value}' not found; pass an existing file to --resume "
                          "(--pth_path of test/train_eval_*.sh), or train first to write it")


def _pretrained(cfg: Config):
    from .pretrained import TORCHVISION, torchvision_weights_path

    value = cfg.output.pretrained
    if value != TORCHVISION:
        return _require_file(value, "--pretrained")
    path = torchvision_weights_path(cfg.arch)  # one line when torchvision ships none
    # not cached: each run downloads it (torchvision's weights API), or says where to put it offline
    return path if path.is_file() else f"{path} (not in the cache: downloaded when the run starts)"


def _auto(cfg: Config) -> Optional[Path]:
    """``--resume auto``: the file the run would pick (metadata reads only), or None."""
    from .checkpoint import CheckpointManager

    found = CheckpointManager(cfg.output.output_dir, is_main=True, warn=lambda msg: None).resume_path("auto")
    return None if found is None else found.absolute()


def _checkpoint(cfg: Config, resolve_auto: bool) -> str:
    out = cfg.output
    # evaluation loads --resume (taken as a path, "auto" too), else --pretrained; training loads
    # --pretrained, then what --resume names
    pretrained = _pretrained(cfg) if out.pretrained and not (out.evaluate and out.resume) else None
    if out.resume is not None and (out.evaluate or out.resume != "auto"):
        return f"{_require_file(out.resume, '--resume')} (--resume)"
    if out.resume == "auto" and out.fresh and pretrained is None:
        return "none (--fresh)"
    if out.resume == "auto" and resolve_auto:
        found = _auto(cfg)
        if found is not None:
            return f"{found} (--resume auto)"
        if pretrained is None:
            return f"none (--resume auto: no checkpoint in {Path(out.output_dir).expanduser().absolute()})"
    return "none" if pretrained is None else f"{pretrained} (--pretrained)"


# ----------------------------------------------------------------------------- output dir


def _output_dir(cfg: Config) -> Path:
    """What ``classify.report.prepare_output_dir`` refuses (it creates nothing)."""
    from .report import prepare_output_dir

    return prepare_output_dir(cfg.output.output_dir)


def _num_classes(cfg: Config, layout: str) -> int:
    """The classifier's width as the run will count it (class folders, not files)."""
    if cfg.data.num_classes:
        return cfg.data.num_classes
    if layout == "dummy":
        return 1000
    if layout in ("cifar10", "demo"):
        return 10
    if layout.startswith("shards"):
        from .data.shards import open_shards

        return len(open_shards(cfg.data.path)[2])
    from .data import resolve_splits

    train, val = resolve_splits(cfg.data.path)
    return len(_class_dirs(train or val))


def _claim(cfg: Config, layout: str, *, job: Optional[str] = None) -> None:
    """The run's decision on the output dir (``classify.rundir.claim``): a folder holding
    another run, or this run without a way to continue it, is refused before anything starts.
    A node joining its own ``job`` (the dir's lock is that job's: another node of it, or an
    elastic join, is running) continues that run, whatever its global batch is now."""
    from .lock import held_by
    from .rundir import claim, identity

    if cfg.output.evaluate or cfg.loop.prof:
        return
    if layout == "demo":
        from .data.demo import default_demo_root

        root = str(default_demo_root())
    else:
        root = "dummy" if layout == "dummy" else cfg.data.path
    ident = identity(data_root=root, arch=cfg.arch, recipe=cfg.recipe, num_classes=_num_classes(cfg, layout),
                     image_size=cfg.data.image_size, global_batch=cfg.optim.batch_size)
    if job is not None and held_by(cfg.output.output_dir, job):
        return  # the job's workers claim it as a restart generation (classify.run)
    claim(cfg.output.output_dir, ident, resume=cfg.output.resume, fresh=cfg.output.fresh, epochs=cfg.optim.epochs)


# ----------------------------------------------------------------------------- all of it


def inspect(cfg: Config, *, resolve_auto: bool = True, job: Optional[str] = None) -> Dict[str, str]:
    """Check the data, the checkpoint and the output dir of ``cfg`` (one-line ``UserError``);
    returns the report's lines other than the devices'. ``resolve_auto=False``: leave
    ``--resume auto`` to the run (it reads every checkpoint's metadata)."""
    layout, path, has_val = _data(cfg)
    _check_mode(cfg, layout, has_val)
    output_dir = _output_dir(cfg)
    _claim(cfg, layout, job=job)
    return {"arch": cfg.arch, "recipe": cfg.recipe, "mode": "evaluate" if cfg.output.evaluate else "train",
            "global_batch": str(cfg.optim.batch_size), "per_device_batch": str(cfg.optim.per_device_batch),
            "data": layout, "data_path": path, "checkpoint": _checkpoint(cfg, resolve_auto),
            "output_dir": str(output_dir)}


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
            return {**inspect(cfg), **single_process_devices(cfg)}
        from .launch import plan

        p = plan(launcher_argv)
        cfg = make_config(p.worker_args, p.world_size, p.nproc)
        return {**inspect(cfg), **launcher_devices(p)}

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
