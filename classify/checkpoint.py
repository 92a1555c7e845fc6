"""Checkpoints: atomic writes by rank 0, torchvision/timm key names, clear load errors.

Format (DESIGN.md): ``state_dict`` (no ``module.``/``_orig_mod.`` prefix), ``optimizer``,
``lr_scheduler``, ``scaler``, ``epoch`` (the last finished epoch), ``step`` (steps done
within the next epoch, for a mid-epoch save), ``best_acc1``, ``arch``, ``recipe``,
``args``, ``rng``, ``classes``.
"""

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from .errors import CheckpointError

__all__ = ["save_atomic", "load_checkpoint", "clean_state_dict", "model_state", "load_model_weights",
           "find_latest"]

_PREFIXES = ("module.", "_orig_mod.")


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
    """Write to a temp file in the same folder, fsync, then ``os.replace``: a crash or a full
    disk mid-write leaves the previous file intact."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path: os.PathLike) -> Dict[str, Any]:
    """Load on CPU; a missing, truncated or foreign file is a one-line ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' not found; check the path given to --resume/--pretrained")
    try:
        # weights_only=False: our checkpoints hold argparse values and RNG states (trusted files).
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint '{path}' cannot be read (truncated or not a checkpoint: {reason}); "
                              "use another file") from None
    if isinstance(obj, dict) and "state_dict" not in obj and obj and all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        obj = {"state_dict": obj}  # a bare state_dict (e.g. torchvision/timm weights)
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise CheckpointError(f"'{path}' is not a checkpoint (no state_dict); use a file written by this "
                              "tool, torchvision or timm")
    return obj


def load_model_weights(model: nn.Module, state: Dict[str, Any], path: os.PathLike, arch: str) -> None:
    """Strict load with a one-line error naming the first mismatch."""
    saved_arch = state.get("arch")
    if saved_arch and saved_arch != arch:
        raise CheckpointError(f"checkpoint '{path}' is a {saved_arch} checkpoint but --arch is {arch}; "
                              f"pass -a {saved_arch}")
    weights = clean_state_dict(state["state_dict"])
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    # torchvision GoogLeNet: aux heads present on one side only are fine (eval uses the main head).
    missing = [k for k in missing if not k.startswith(("aux1.", "aux2."))]
    unexpected = [k for k in unexpected if not k.startswith(("aux1.", "aux2."))]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint '{path}' does not fit {arch}: missing {missing[:2]}, "
                              f"unexpected {unexpected[:2]}; check --arch")
    for key, value in weights.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f"checkpoint '{path}' does not fit: {key} has shape {tuple(value.shape)}, "
                                  f"model has {tuple(own[key].shape)}; check --num-classes/--arch")
    model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)


def find_latest(output_dir: os.PathLike, warn) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """``--resume auto``: the most advanced readable checkpoint in ``output_dir`` (by epoch, then
    step, then mtime), or None. A corrupt file is skipped with ``warn(message)``."""
    best = None
    for path in sorted(Path(output_dir).glob("*.pth.tar")):
        try:
            state = load_checkpoint(path)
        except CheckpointError as e:
            warn(f"warning: skipping {e}")
            continue
        if "optimizer" not in state:
            continue
        key = (int(state.get("epoch", 0)), int(state.get("step", 0)), path.stat().st_mtime)
        if best is None or key > best[0]:
            best = (key, path, state)
    return None if best is None else (best[1], best[2])
