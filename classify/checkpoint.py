"""Checkpoints: the schema, atomic writes by rank 0, safe loading, resume, retention.

Schema (docs/architecture.md, "Checkpoints"): ``state_dict`` (no ``module.``/``_orig_mod.``
prefix: torchvision/timm key names), ``optimizer``, ``lr_scheduler``, ``scaler``, ``epoch``
(epochs finished), ``step`` (steps done within the next epoch, for a mid-epoch save),
``best_acc1``, ``arch``, ``recipe``, ``args`` (the resolved flags, plain values), ``rng``
(rank 0's generators), ``rng_per_rank``, ``classes``.

A checkpoint is data, never code: every load in the project goes through ``load_checkpoint``,
which uses ``torch.load(weights_only=True)``. Everything we save is tensors and plain values;
a file that needs any other object is refused with one line and nothing of it runs.

``CheckpointManager`` owns the files of one output dir: ``checkpoint.pth.tar`` (latest),
``model_best.pth.tar`` (an in-kernel copy of the file just written: the state is
serialised once), ``checkpoint-<epoch>.pth.tar`` for the ``--keep-checkpoints N`` newest
finished epochs, ``--resume auto`` (the newest valid file, chosen from a metadata read) and
restoring everything a file holds.
"""

import errno
import os
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

import models

from .atomic import copy_atomic, unlink, write_atomic
from .devices import rng_state, set_rng_state
from .distributed import gather_objects
from .errors import CheckpointError, NonFiniteLoss, StorageError, UnsafeCheckpoint, UserError, os_error_text
from .identity import differences
from .optim import KERNEL_KEYS

__all__ = ["CheckpointManager", "Progress", "TrainingObjects", "save_atomic", "load_checkpoint",
           "clean_state_dict", "model_state", "load_model_weights", "HeadSwap", "LATEST", "BEST", "check_file",
           "check_start", "folder_given"]

LATEST, BEST = "checkpoint.pth.tar", "model_best.pth.tar"
_EPOCH_FILE = re.compile(r"^checkpoint-(\d+)\.pth\.tar$")
_PREFIXES = ("module.", "_orig_mod.")
# numpy arrays, as the RNG state of checkpoints written before RNG states were stored as
# tensors: allowed so that those runs still resume. Only these numpy callables can be
# reached; they build arrays and dtypes, never call other code, and an object array's
# elements still go through the same restricted unpickler (plain values only). numpy 1.x
# pickles name the reconstructor numpy.core..., numpy 2 numpy._core...: both are accepted.
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
_NUMPY_ARRAY_GLOBALS = [(_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
                        (_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
                        np.ndarray, np.dtype, type(np.dtype(np.uint32))]
_NUMPY_ARRAY_NAMES = {"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
                      "numpy.ndarray", "numpy.dtype", "numpy.dtypes.UInt32DType"}


# ----------------------------------------------------------------------------- files


def clean_state_dict(state: Dict[str, Any]) -> Dict[str, Any]:
    """Strip DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def model_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    return clean_state_dict(model.state_dict())


def save_atomic(obj: Any, path: os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (``classify.atomic``: temp file, fsync, ``os.replace``;
    a crash or a full disk mid-write leaves the previous file intact)."""
    write_atomic(lambda f: torch.save(obj, f), path)


def os_error_of(error: BaseException) -> Optional[OSError]:
    """The OSError behind a failed write: ``error`` itself, or what torch's writer wrapped in a
    RuntimeError (``inline_container``: "unexpected pos ...", with the OSError as its context)."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def mount_point(path: os.PathLike) -> str:
    """The mount point of the filesystem holding ``path`` (the "device" a full disk is)."""
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def write_failure(error: BaseException, path: Path, kept: str) -> Optional[StorageError]:
    """One line for a write of ``path`` that the filesystem refused (``kept``: what is still intact),
    or None when ``error`` is not an OS error (a bug: let it show)."""
    cause = os_error_of(error)
    if cause is None:
        return None
    if cause.errno in (errno.ENOSPC, errno.EDQUOT):
        full = "no space left on" if cause.errno == errno.ENOSPC else "disk quota exceeded on"
        return StorageError(f"{full} {mount_point(path.parent)} while saving {path}; {kept}")
    cause.filename = cause.filename or str(path)
    return StorageError(f"cannot save {path} ({os_error_text(cause)}); {kept}")


def _torch_load(path: Path, mmap: bool):
    """``torch.load(weights_only=True)``: tensors and plain values only, never code. ``mmap``
    (map the tensors, read only the metadata) needs the zip format that torch has written
    since 1.6; an older file is read in full."""
    mmap = mmap and zipfile.is_zipfile(path)
    with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _refusal(path: Path, error: pickle.UnpicklingError) -> CheckpointError:
    """The one-line refusal naming the objects the file needs; a file whose failure names none
    (e.g. bytes that are no pickle at all) is just unreadable."""
    try:
        names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                 if n not in _NUMPY_ARRAY_NAMES]
    except Exception:
        names = []
    if not names:
        found = re.search(r"GLOBAL (\S+)", str(error)) or re.search(r"but got <class '([^']+)'>", str(error))
        if found is None:
            return _unreadable(path, error)
        names = [found.group(1)]
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return UnsafeCheckpoint(f"checkpoint '{path}' holds objects other than tensors and plain values ({shown}); "
                            "refusing to load it — it could run code")


def folder_given(value, flag: str = "--resume") -> str:
    """The one line for a checkpoint path that is a folder."""
    how = (f"pass a checkpoint file in it (e.g. {Path(value) / LATEST}), or --resume auto with --output-dir "
           f"{value}" if flag == "--resume" else f"pass a weights file in it to {flag}")
    return f"checkpoint '{value}' is a folder, not a file; {how}"


def _read(path: Path, mmap: bool = False) -> Any:
    if path.is_dir():
        raise CheckpointError(folder_given(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' not found; check the path given to --resume/--pretrained")
    try:
        return _torch_load(path, mmap)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise _refusal(path, e) from None
        raise _unreadable(path, e) from None
    except Exception as e:  # truncated, foreign, or crafted to fail inside an allowed constructor
        raise _unreadable(path, e) from None


def _unreadable(path: Path, error: Exception) -> CheckpointError:
    reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
    return CheckpointError(f"checkpoint '{path}' cannot be read (truncated or not a checkpoint: {reason}); "
                           "use another file")


def load_checkpoint(path: os.PathLike, mmap: bool = False) -> Dict[str, Any]:
    """A checkpoint dict, loaded safely on the CPU. A bare state_dict (torchvision/timm weights)
    comes back as ``{"state_dict": ...}``. A missing, truncated, foreign or unsafe file is a
    one-line ``CheckpointError``. ``mmap``: map the tensors instead of reading them (metadata)."""
    path = Path(path)
    obj = _read(path, mmap)
    if isinstance(obj, dict) and "state_dict" not in obj and obj and all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        obj = {"state_dict": obj}
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise CheckpointError(f"'{path}' is not a checkpoint (no state_dict); use a file written by this "
                              "tool, torchvision or timm")
    return obj


@dataclass(frozen=True)
class HeadSwap:
    """The head modules that ``load_model_weights`` left fresh, and the class counts."""

    names: Tuple[str, ...]
    old_classes: Optional[int]  # the file's (None: its head keys are absent)
    new_classes: int


def load_model_weights(model: nn.Module, state: Dict[str, Any], *, path: os.PathLike, arch: str,
                       head: str = "keep") -> Optional[HeadSwap]:
    """Strict load with a one-line error naming the first mismatch; the keys the net declares
    optional (``ModelEntry.optional_keys``) may be missing or extra. ``head``: ``keep`` loads the
    head as every other layer; ``auto`` leaves the head (``ModelEntry.head``) as the model has it
    (fresh) when the file's head has another shape (another class count); ``fresh`` always.
    Returns what was left fresh, or None."""
    saved_arch = state.get("arch")
    if saved_arch and saved_arch != arch:
        raise CheckpointError(f"checkpoint '{path}' is a {saved_arch} checkpoint but --arch is {arch}; "
                              f"pass -a {saved_arch}")
    entry = models.get_model_entry(arch)
    weights = clean_state_dict(state["state_dict"])
    own = model.state_dict()
    swap = _head_swap(entry, own, weights, head)
    if swap is not None:
        weights = {k: v for k, v in weights.items() if entry.head_of(k) is None}
        own = {k: v for k, v in own.items() if entry.head_of(k) is None}
    missing = [k for k in own if k not in weights and not entry.is_optional_key(k)]
    unexpected = [k for k in weights if k not in own and not entry.is_optional_key(k)]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint '{path}' does not fit {arch}: missing {missing[:2]}, "
                              f"unexpected {unexpected[:2]}; check --arch")
    for key, value in weights.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f"checkpoint '{path}' does not fit: {key} has shape {tuple(value.shape)}, "
                                  f"model has {tuple(own[key].shape)}; check --num-classes/--arch")
    model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    return swap


def _head_swap(entry, own: Dict[str, torch.Tensor], weights: Dict[str, Any], head: str) -> Optional[HeadSwap]:
    """Whether (and which) head modules start fresh instead of loading (see load_model_weights)."""
    present = tuple(name for name in entry.head if f"{name}.weight" in own)  # e.g. no aux heads built
    if head == "keep" or not present:
        return None
    differs = any(key in weights and entry.head_of(key) is not None and weights[key].shape != value.shape
                  for key, value in own.items())
    if head == "auto" and not differs:
        return None
    main = f"{present[0]}.weight"
    old = weights[main].shape[0] if main in weights else None
    return HeadSwap(present, old, own[main].shape[0])


# ----------------------------------------------------------------------------- pre-flight


def check_file(value: os.PathLike, flag: str = "--resume") -> Path:
    """The file ``flag`` (``--resume`` or ``--pretrained``) names, absolute; a one-line
    ``CheckpointError`` when it is not a file. Looks at the name only (no read)."""
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


def check_start(*, output_dir: os.PathLike, resume: Optional[str], evaluate: bool, fresh: bool,
                pretrained: Callable[[], Union[Path, str, None]], resolve_auto: bool = True) -> str:
    """The checkpoint pre-flight of a run (``--check`` and the run itself): what it starts from,
    as ``--check`` prints it (``none``, ``PATH (--resume)``, ``PATH (--resume auto)``,
    ``none (--resume auto: no checkpoint in DIR)``, ``none (--fresh)``, ``PATH (--pretrained)``);
    a one-line ``CheckpointError`` for a file that is not there. Evaluation loads ``--resume``
    (a path, "auto" too), else ``--pretrained``; training loads ``--pretrained``, then what
    ``--resume`` names. ``pretrained()``: the checked weights file (``classify.pretrained``), or
    None. ``resolve_auto=False`` leaves ``--resume auto`` to the run (it reads every checkpoint's
    metadata)."""
    weights = pretrained() if not (evaluate and resume) else None
    if resume is not None and (evaluate or resume != "auto"):
        return f"{check_file(resume, '--resume')} (--resume)"
    if resume == "auto" and fresh and weights is None:
        return "none (--fresh)"
    if resume == "auto" and resolve_auto:
        found = CheckpointManager(Path(output_dir), is_main=True, warn=lambda msg: None).resume_path("auto")
        if found is not None:
            return f"{found.absolute()} (--resume auto)"
        if weights is None:
            return f"none (--resume auto: no checkpoint in {Path(output_dir).expanduser().absolute()})"
    return "none" if weights is None else f"{weights} (--pretrained)"


# ----------------------------------------------------------------------------- a run's checkpoints


@dataclass
class Progress:
    """Where training is: ``epoch`` (epochs finished) and ``step`` (steps into the next one)."""

    epoch: int = 0
    step: int = 0
    best_acc1: Optional[float] = None  # None before the first evaluation
    best_is_ema: bool = False  # --model-ema: best_acc1 is the EMA weights' (model_best holds both)


@dataclass
class TrainingObjects:
    """What a checkpoint saves and restores besides the progress."""

    model: nn.Module  # possibly DDP/compile-wrapped: the keys are cleaned
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Optional[torch.amp.GradScaler] = None
    ema: Optional[Any] = None  # --model-ema: a classify.ema.ModelEma (saved as state_dict_ema)


class CheckpointManager:
    """The checkpoint files of one output dir. ``save`` is called on every rank (each rank
    contributes its RNG state, a collective); only rank 0 writes."""

    def __init__(self, output_dir: Path, *, is_main: bool, keep: int = 0, every: int = 0,
                 run_info: Optional[Dict] = None, restarted: bool = False,
                 warn: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)):
        self.output_dir = Path(output_dir)
        self.restarted = restarted  # a torchrun restart generation: its global batch may differ (elastic)
        self.is_main, self.keep, self.every = is_main, keep, every
        self.run_info = dict(run_info or {})  # arch, recipe, args, classes
        self.warn = warn

    @property
    def latest_path(self) -> Path:
        return self.output_dir / LATEST

    def save(self, objects: TrainingObjects, progress: Progress, *, is_best: bool = False,
             finished_epoch: Optional[int] = None) -> None:
        """Write ``checkpoint.pth.tar``; ``model_best.pth.tar`` too when ``is_best``; and, with
        ``keep``, ``checkpoint-<finished_epoch>.pth.tar`` (older ones beyond ``keep`` removed); with
        ``every`` (--checkpoint-freq N), that file also after every N-th epoch."""
        rng = gather_objects(rng_state())
        if not self.is_main:
            return
        state = {
            "state_dict": model_state(objects.model), "optimizer": objects.optimizer.state_dict(),
            "lr_scheduler": objects.scheduler.state_dict(),
            "scaler": objects.scaler.state_dict() if objects.scaler is not None else None,
            "epoch": progress.epoch, "step": progress.step, "best_acc1": progress.best_acc1,
            "rng": rng[0], "rng_per_rank": rng, **self.run_info,
        }
        if objects.ema is not None:  # torchvision/timm key names, like state_dict
            state.update(state_dict_ema=model_state(objects.ema.module), ema_updates=int(objects.ema.n_averaged),
                         best_is_ema=progress.best_is_ema)
        try:
            save_atomic(state, self.latest_path)
        except (OSError, RuntimeError) as e:  # a full disk: the temp file is gone, the previous file intact
            raise write_failure(e, self.latest_path, self._previous()) or e
        saved = f"the checkpoint {self.latest_path} (epoch {progress.epoch}, step {progress.step}) is saved"
        copies = []
        if is_best and self._may_replace_best(progress.best_acc1):
            copies.append(self.output_dir / BEST)
        due = self.every and finished_epoch is not None and (finished_epoch + 1) % self.every == 0
        if (self.keep or due) and finished_epoch is not None:
            copies.append(self.output_dir / f"checkpoint-{finished_epoch}.pth.tar")
        for copy in copies:
            try:
                copy_atomic(self.latest_path, copy)
            except OSError as e:
                raise write_failure(e, copy, f"{saved} and the previous {copy.name} is intact") from None
            if self.keep and copy.name != BEST:
                self._prune(copy)

    def _previous(self) -> str:
        """What a failed save left: the previous latest checkpoint, read from its metadata."""
        try:
            old = load_checkpoint(self.latest_path, mmap=True)
        except CheckpointError:
            return ("the previous file there is unreadable" if self.latest_path.exists()
                    else "no earlier checkpoint was saved")
        return f"the previous checkpoint (epoch {old.get('epoch')}, step {old.get('step')}) is intact"

    def _may_replace_best(self, acc1: Optional[float]) -> bool:
        """``model_best.pth.tar`` is only ever replaced by a better model of the same run: not
        when the file there is of another run (its run id) or at least as good."""
        path = self.output_dir / BEST
        if not path.is_file():
            return True
        try:
            old = load_checkpoint(path, mmap=True)
        except CheckpointError:
            return True  # unreadable: nothing worth keeping
        run_id = (self.run_info.get("identity") or {}).get("run_id")
        old_id = (old.get("identity") or {}).get("run_id") if isinstance(old.get("identity"), dict) else None
        if old_id is not None and old_id != run_id:  # None: written before run ids
            self.warn(f"warning: {path} is of another run ({old_id}); this run's best model is not written "
                      f"there (its latest is {self.latest_path})")
            return False
        best = old.get("best_acc1")
        return best is None or acc1 is None or acc1 > best

    def after_nonfinite(self, objects: TrainingObjects, progress: Progress, error: NonFiniteLoss) -> NonFiniteLoss:
        """``--nan-policy``: save the last good state when the bad step was not applied (``error.step``
        set), and return the error to raise, naming where the good state is."""
        if error.step is not None:
            self.save(objects, Progress(epoch=progress.epoch, step=error.step, best_acc1=progress.best_acc1))
            where = f"the last good state is saved in {self.latest_path}"
        else:
            where = f"{self.latest_path} holds the last checkpoint written before it"
        return NonFiniteLoss(f"{error}; {where}. Lower --lr, add warm-up (--warmup-epochs) or use --amp with a "
                             "loss scale, then --resume", error.step)

    def _prune(self, kept: Path) -> None:
        """Remove epoch files beyond the ``keep`` newest; never the one just written (a reused
        output dir may hold higher epochs of an earlier run)."""
        others = [path for _, path in self.epoch_files() if path != kept]
        for path in others[:max(0, len(others) - (self.keep - 1))]:
            unlink(path)

    def epoch_files(self) -> List[Tuple[int, Path]]:
        """``checkpoint-<epoch>.pth.tar`` files, oldest first."""
        found = [(int(m.group(1)), p) for p in self.output_dir.glob("checkpoint-*.pth.tar")
                 if (m := _EPOCH_FILE.match(p.name))]
        return sorted(found)

    def resume_path(self, resume: Optional[str]) -> Optional[Path]:
        """``--resume``: a path as given, or for ``auto`` the most advanced valid checkpoint in the
        output dir (by epoch, then step, then mtime; a corrupt file is skipped with a warning, a
        file that would run code stops the run), None when there is none. Only each file's
        metadata is read (tensors are memory-mapped, not read)."""
        if resume is None or resume != "auto":
            return None if resume is None else Path(resume)
        best = None
        for path in sorted(self.output_dir.glob("*.pth.tar")):
            try:
                state = load_checkpoint(path, mmap=True)
            except UnsafeCheckpoint:
                raise
            except CheckpointError as e:
                self.warn(f"warning: skipping {e}")
                continue
            if "optimizer" not in state:
                continue
            try:
                key = (int(state.get("epoch") or 0), int(state.get("step") or 0), path.stat().st_mtime)
            except (TypeError, ValueError):
                self.warn(f"warning: skipping checkpoint '{path}': its epoch/step are not numbers")
                continue
            finally:
                del state
            if best is None or key > best[0]:
                best = (key, path)
        return None if best is None else best[1]

    def resume(self, resume: Optional[str], objects: TrainingObjects, *, arch: str, rank: int, world_size: int,
               log: Callable[[str], None]) -> Optional[Progress]:
        """``--resume PATH|auto``: restore into ``objects``; the progress, or None to start afresh."""
        path = self.resume_path(resume)
        if path is None:
            if resume == "auto":
                log(f"=> --resume auto: no checkpoint in '{self.output_dir}', starting from scratch")
            return None
        progress = self.restore(path, objects, arch=arch, rank=rank, world_size=world_size)
        log(f"=> resumed from '{path}' (epoch {progress.epoch}, step {progress.step})")
        return progress

    def restore(self, path: Path, objects: TrainingObjects, *, arch: str, rank: int, world_size: int) -> Progress:
        """Load everything ``path`` holds into ``objects`` and this rank's RNG; returns the progress."""
        state = load_checkpoint(path)
        self._check_identity(path, state)
        load_model_weights(_bare(objects.model), state, path=path, arch=arch)
        for key in ("optimizer", "lr_scheduler"):
            if key not in state:
                raise UserError(f"'{path}' holds weights only (no {key}); use --pretrained {path} to start from it")
        kernels = {k: objects.optimizer.defaults[k] for k in KERNEL_KEYS if k in objects.optimizer.defaults}
        _check_optimizer(path, state["optimizer"], objects.optimizer)
        objects.optimizer.load_state_dict(state["optimizer"])
        for group in objects.optimizer.param_groups:  # this run's device decides, not the saving run's
            group.update(kernels)
        objects.scheduler.load_state_dict(state["lr_scheduler"])
        if objects.scaler is not None and state.get("scaler"):
            objects.scaler.load_state_dict(state["scaler"])
        if objects.ema is not None:
            _restore_ema(objects, state, path=path, arch=arch)
        per_rank = state.get("rng_per_rank") or [state.get("rng")]
        if len(per_rank) == world_size and per_rank[rank]:
            set_rng_state(per_rank[rank])
        return Progress(epoch=int(state["epoch"]), step=int(state.get("step", 0)), best_acc1=state.get("best_acc1"),
                        best_is_ema=bool(state.get("best_is_ema", False)))

    def _check_identity(self, path: Path, state: Dict[str, Any]) -> None:
        """Continue only a run of this run's identity (data root, arch, recipe, classes, image
        size, global batch: ``classify.identity``); a checkpoint written before identities passes."""
        saved, ours = state.get("identity"), self.run_info.get("identity")
        if ours and self.restarted:  # elastic membership (--nnodes MIN:MAX) changes the world size
            ours = {**ours, "global_batch": None}
        differ = differences(saved, ours) if isinstance(saved, dict) and ours else []
        if saved.get("arch") != ours.get("arch") if differ else False:  # the flag that makes it fit
            raise CheckpointError(f"checkpoint '{path}' is a {saved['arch']} checkpoint but --arch is {ours['arch']}; "
                                  f"pass -a {saved['arch']}")
        if differ:
            raise CheckpointError(f"checkpoint '{path}' is of another run ({', '.join(differ)}); continue it "
                                  f"with the flags it was trained with, or start from its weights with "
                                  f"--pretrained {path}")


def _check_optimizer(path: Path, saved: Dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """The optimizer state of another ``--opt`` (its hyperparameter names, or SGD's nesterov) is refused."""
    def kind(group: Dict[str, Any]) -> Tuple:  # a key only that optimizer's groups hold, and SGD's nesterov
        return tuple(key in group for key in ("dampening", "alpha", "amsgrad")) + (bool(group.get("nesterov")),)

    groups = saved.get("param_groups") or [{}]
    if kind(groups[0]) != kind(optimizer.param_groups[0]):
        raise CheckpointError(f"checkpoint '{path}' holds the state of another optimizer than this run's "
                              f"{type(optimizer).__name__}; continue it with the --opt it was trained with, or start "
                              f"from its weights with --pretrained {path}")


def _restore_ema(objects: TrainingObjects, state: Dict[str, Any], *, path: Path, arch: str) -> None:
    """``state_dict_ema`` into the EMA; a checkpoint without one (a run that had no EMA) starts
    the EMA from the resumed weights."""
    ema = objects.ema
    if state.get("state_dict_ema") is None:
        ema.module.load_state_dict(_bare(objects.model).state_dict())
        ema.n_averaged.fill_(0)
        return
    load_model_weights(ema.module, {"state_dict": state["state_dict_ema"], "arch": state.get("arch")}, path=path,
                       arch=arch)
    ema.n_averaged.fill_(int(state.get("ema_updates", 1)))


def _bare(model: nn.Module) -> nn.Module:
    """The module under DDP's and torch.compile's wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner
