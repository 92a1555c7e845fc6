"""An output folder knows which run it holds (``config.json``'s ``identity``), and a run uses a
folder only when that is safe.

The identity of a run: data root (and the data index's fingerprint once there is one), arch,
recipe, number of classes, image size, global batch, and a run id. Each run records it in
``<output_dir>/config.json`` when it starts. ``claim`` is the one decision, made before
anything in the folder is touched (by the run and, before anything starts, by ``--check``):

- no run in the folder (no checkpoint, ``metrics.jsonl`` or ``summary.json``): a new run;
- ``--fresh``: a new run; rank 0 first moves the old run's files to ``previous-<time>/``
  (``move_aside``; nothing deleted, the lock file ``.classify.lock`` and unknown files stay);
- a run of another identity: refused, one line naming what differs and the ways out;
- the same identity: continued with ``--resume`` (a path or ``auto``: the launcher's
  auto-continue and restarts), unless it is finished and ``--epochs`` is not larger;
  without ``--resume`` an unfinished run is continued too (the same command after a stop
  continues it, as the launcher does; ``Held.auto``), a finished one refused with the two
  ways on (``--epochs N`` above its epochs, ``--fresh``).
"""

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import UserError
from .identity import differences, new_run_id
from .outdir import LOCK_NAME

__all__ = ["Held", "held_run", "claim", "claim_run", "move_aside", "RUN_FILES"]

_PROGRESS = ("checkpoint.pth.tar", "model_best.pth.tar", "checkpoint-*.pth.tar", "metrics.jsonl", "summary.json")
# What a run writes into its folder: what --fresh moves aside (nothing else of the folder,
# which may be the current directory).
RUN_FILES = (*_PROGRESS, "config.json", "curves.png", "tensorboard", "profile", ".*.tmp")


@dataclass
class Held:
    """The run a folder holds."""

    identity: Dict  # the identity fields known (an older folder may lack some)
    run_id: Optional[str]
    epochs_done: Optional[int]  # epochs finished, from checkpoint.pth.tar
    files: List[str]
    auto: bool = False  # continued without --resume: the same command after a stop (as --resume auto)


def _progress_files(folder: Path) -> List[str]:
    return sorted({p.name for pattern in _PROGRESS for p in folder.glob(pattern)})


def _read_config(folder: Path) -> Dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def _identity_of_config(config: Dict) -> Dict:
    """``config.json``'s identity; for a folder written before identities, what its config says."""
    if isinstance(config.get("identity"), dict):
        return dict(config["identity"])
    data, optim = config.get("data") or {}, config.get("optim") or {}
    path = data.get("path")
    old = {"arch": config.get("arch"), "recipe": config.get("recipe"), "image_size": data.get("image_size"),
           "global_batch": optim.get("batch_size"),
           "data_root": "dummy" if data.get("kind") == "dummy" else (path if path and os.path.isabs(path) else None)}
    return {k: v for k, v in old.items() if v is not None}


def _epochs_done(folder: Path) -> Optional[int]:
    from .checkpoint import LATEST, load_checkpoint

    try:
        state = load_checkpoint(folder / LATEST, mmap=True)
        return int(state.get("epoch") or 0)
    except Exception:  # missing or unreadable: --resume auto's business
        return None


def held_run(folder: os.PathLike) -> Optional[Held]:
    """The run ``folder`` holds, or None (no folder, or no progress in it: a config.json alone
    is a run that stopped before its first checkpoint)."""
    folder = Path(folder).expanduser()
    files = _progress_files(folder) if folder.is_dir() else []
    if not files:
        return None
    config = _read_config(folder)
    ident = _identity_of_config(config)
    return Held(identity=ident, run_id=ident.pop("run_id", None), epochs_done=_epochs_done(folder), files=files)


def _ways_out(folder: Path) -> str:
    return (f"pass another --output-dir (--device_id of test/*.sh), or --fresh to start over there "
            f"(the old run moves to {folder}/previous-<time>/)")


def claim(folder: os.PathLike, ident: Dict, *, resume: Optional[str], fresh: bool, epochs: int) -> Optional[Held]:
    """May a run of identity ``ident`` use ``folder``? Returns the run it continues (None: a new
    run); a one-line ``UserError`` when it may not. Reads only; changes nothing."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output dir '{folder}' is a file; pass --output-dir to a folder")
    held = held_run(folder)
    if held is None or fresh:
        return None
    differ = differences(held.identity, ident)
    if differ:
        raise UserError(f"output dir '{folder}' holds another run ({', '.join(differ)}); {_ways_out(folder)}")
    done = held.epochs_done
    if resume in (None, "auto") and done is not None and done >= epochs:
        raise UserError(f"output dir '{folder}' holds a finished run of this config ({done} epoch{'s' * (done != 1)}); "
                        f"pass --epochs {done + 1} (or more) to train it further, or {_ways_out(folder)}")
    if resume is None:
        if done is not None:  # an unfinished run with a checkpoint: the same command continues it
            held.auto = True
            return held
        raise UserError(f"output dir '{folder}' holds a run of this config ({', '.join(held.files)}) but no "
                        f"checkpoint to continue it from; {_ways_out(folder)}")
    return held


def claim_run(folder: os.PathLike, ident: Dict, *, resume: Optional[str], fresh: bool, epochs: int,
              writes: bool = True, restarted: bool = False) -> Tuple[Dict, Optional[Held]]:
    """The pre-flight of a run's output dir, the same for the run (``classify.run``) and for
    ``--check``: ``claim`` for a run that ``writes`` (an evaluation or ``--prof`` writes no
    checkpoint and no metrics: nothing to claim). Returns ``ident`` with the run id (the
    continued run's, or a new one) and the run the folder holds (None: none), whose ``auto``
    says that the same command continues it as ``--resume auto``. A ``restarted`` torchrun
    generation continues its run (as ``--resume auto``) whatever its global batch is now
    (elastic membership)."""
    if not writes:
        return ident, None
    resume = resume or ("auto" if restarted else None)
    compared = {**ident, "global_batch": None} if restarted else ident
    held = claim(folder, compared, resume=resume, fresh=fresh and not restarted, epochs=epochs)
    return {**ident, "run_id": held.run_id if held is not None and held.run_id else new_run_id()}, held


def move_aside(folder: os.PathLike) -> Optional[Path]:
    """``--fresh``: move the files a run writes (``RUN_FILES``) into ``folder/previous-<time>/``
    and return it (None when there was nothing to move). Nothing is deleted; the lock file, the
    earlier ``previous-*`` folders and files of others stay where they are."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return None
    names = sorted({p.name for pattern in RUN_FILES for p in folder.glob(pattern)} - {LOCK_NAME})
    if not names:
        return None
    target = folder / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"previous-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    target.mkdir()
    for name in names:
        shutil.move(str(folder / name), str(target / name))  # a rename within the folder
    return target
