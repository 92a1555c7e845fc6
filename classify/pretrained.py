"""``--pretrained [PATH]``: weights from a file, or torchvision's (a bare ``--pretrained``).

torchvision's weights come from the local cache (``$TORCH_HOME/hub/checkpoints``), or when
they are not there, are downloaded through torchvision's weights API into that cache with
their checksum checked. On a machine that cannot reach the download (offline machines are the
norm on training clusters) the error says where to put the file.
"""

import socket
from pathlib import Path
from typing import Any, Dict, Union

import torch
from torchvision.models import get_model_weights

from .checkpoint import check_file, load_checkpoint
from .errors import CheckpointError

__all__ = ["TORCHVISION", "torchvision_weights_path", "cached_torchvision_weights", "download_torchvision_weights",
           "check_pretrained", "load_pretrained"]

TORCHVISION = "torchvision"  # the value of a bare --pretrained
DOWNLOAD_TIMEOUT_S = 30  # a blackholed network (no route, no answer) fails instead of hanging


def torchvision_weights_path(arch: str) -> Path:
    try:
        weights = get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        raise CheckpointError(f"torchvision ships no pretrained {arch}; pass the weights file: "
                              f"--pretrained PATH (e.g. timm's {arch} weights)") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _not_cached(path: Path, arch: str) -> CheckpointError:
    return CheckpointError(f"torchvision {arch} weights are not in the local cache and cannot be "
                           f"downloaded here; copy {path.name} to {path} or pass --pretrained PATH")


def cached_torchvision_weights(arch: str) -> Path:
    """The torchvision weights file of ``arch`` in the local cache (one line if it is not there)."""
    path = torchvision_weights_path(arch)
    if not path.is_file():
        raise _not_cached(path, arch)
    return path


def download_torchvision_weights(arch: str, *, progress: bool = True) -> Dict[str, Any]:
    """torchvision's weights of ``arch`` through its weights API (``WeightsEnum.get_state_dict``:
    torch.hub's download into the hub cache, the file's sha256 prefix checked, loaded with
    ``weights_only=True``). Offline: the one line that says where to put the file."""
    path = torchvision_weights_path(arch)
    weights = get_model_weights(arch).DEFAULT
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        state = weights.get_state_dict(progress=progress, check_hash=True, weights_only=True, map_location="cpu")
    except OSError:  # urllib's URLError/HTTPError, a timeout, no route: cannot be downloaded here
        raise _not_cached(path, arch) from None
    except RuntimeError as e:  # torch.hub's checksum check
        if "hash" not in str(e):
            raise
        raise CheckpointError(f"torchvision {arch} weights downloaded from {weights.url} fail their checksum "
                              f"({str(e).splitlines()[0][:120]}); nothing was kept, run again, or copy "
                              f"{path.name} to {path}") from None
    finally:
        socket.setdefaulttimeout(previous)
    return {"state_dict": state}


def _is_torchvision_file(path: str, arch: str) -> bool:
    try:
        return Path(path).name == torchvision_weights_path(arch).name
    except CheckpointError:
        return False


def check_pretrained(value: str, arch: str) -> Union[Path, str]:
    """The pre-flight of ``--pretrained`` (``--check`` and the run): the weights file it names,
    or torchvision's in the local cache, or when it is not cached, where the run will download
    it (``PATH (not in the cache: downloaded when the run starts)``; offline, the run's download
    says where to put it); one line when a named file is not there or torchvision ships no
    weights for ``arch``. Reads nothing."""
    if value != TORCHVISION:
        return check_file(value, "--pretrained")
    path = torchvision_weights_path(arch)
    return path if path.is_file() else f"{path} (not in the cache: downloaded when the run starts)"


def load_pretrained(value: str, arch: str) -> Dict[str, Any]:
    """A checkpoint dict for ``--pretrained`` (a path, or the torchvision cache)."""
    if value != TORCHVISION:
        check_pretrained(value, arch)
        state = load_checkpoint(value)
        if _is_torchvision_file(value, arch):  # torchvision's weights file, copied by hand
            state["torchvision"] = True
        return state
    path = torchvision_weights_path(arch)
    state = load_checkpoint(path) if path.is_file() else download_torchvision_weights(arch)
    state["arch"] = arch
    state["torchvision"] = True
    return state
