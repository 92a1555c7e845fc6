"""``--pretrained [PATH]``: weights from a file, or torchvision's if already in the local cache.

No download is attempted (offline machines are the norm on training clusters): when the
file is not in ``$TORCH_HOME/hub/checkpoints`` the error says where to put it.
"""

from pathlib import Path
from typing import Any, Dict

import torch
from torchvision.models import get_model_weights

from .checkpoint import check_file, load_checkpoint
from .errors import CheckpointError

__all__ = ["TORCHVISION", "torchvision_weights_path", "cached_torchvision_weights", "check_pretrained",
           "load_pretrained"]

TORCHVISION = "torchvision"  # the value of a bare --pretrained


def torchvision_weights_path(arch: str) -> Path:
    try:
        weights = get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        raise CheckpointError(f"torchvision ships no pretrained {arch}; pass the weights file: "
                              f"--pretrained PATH (e.g. timm's {arch} weights)") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def cached_torchvision_weights(arch: str) -> Path:
    """The torchvision weights file of ``arch`` in the local cache (one line if it is not there)."""
    path = torchvision_weights_path(arch)
    if not path.is_file():
        raise CheckpointError(f"torchvision {arch} weights are not in the local cache and cannot be "
                              f"downloaded here; copy {path.name} to {path} or pass --pretrained PATH")
    return path


def _is_torchvision_file(path: str, arch: str) -> bool:
    try:
        return Path(path).name == torchvision_weights_path(arch).name
    except CheckpointError:
        return False


def check_pretrained(value: str, arch: str) -> Path:
    """The pre-flight of ``--pretrained`` (``--check`` and the run): the weights file it names,
    or torchvision's in the local cache; one line when it is not there. Reads nothing."""
    if value != TORCHVISION:
        return check_file(value, "--pretrained")
    return cached_torchvision_weights(arch)


def load_pretrained(value: str, arch: str) -> Dict[str, Any]:
    """A checkpoint dict for ``--pretrained`` (a path, or the torchvision cache)."""
    if value != TORCHVISION:
        check_pretrained(value, arch)
        state = load_checkpoint(value)
        if _is_torchvision_file(value, arch):  # torchvision's weights file, copied by hand
            state["torchvision"] = True
        return state
    state = load_checkpoint(cached_torchvision_weights(arch))
    state["arch"] = arch
    state["torchvision"] = True
    return state
