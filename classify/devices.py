"""Everything device-specific lives here: resolution, synchronisation, capabilities.

``--device auto`` picks npu when ``torch_npu`` imports, else cuda, else cpu.
"""

import importlib
import os
from typing import Optional

import torch

from .errors import UserError

__all__ = ["resolve_device", "synchronize", "supports_bf16", "device_count", "npu_available",
           "dist_backend", "pin_memory", "manual_seed_all", "rng_state", "set_rng_state"]

_ALIASES = {"gpu": "cuda"}


def npu_available() -> bool:
    try:
        importlib.import_module("torch_npu")
    except Exception:
        return False
    return hasattr(torch, "npu") and torch.npu.is_available()


def device_count(kind: str) -> int:
    if kind == "cuda":
        return torch.cuda.device_count()
    if kind == "npu":
        return torch.npu.device_count() if npu_available() else 0
    return os.cpu_count() or 1


def _kind(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name == "auto":
        if npu_available():
            return "npu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda", "npu"):
        raise UserError(f"unknown --device '{name}'; use auto, cpu, cuda (gpu) or npu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for but no CUDA device is visible; use --device cpu")
    if name == "npu" and not npu_available():
        raise UserError("--device npu asked for but torch_npu is not installed or sees no NPU; "
                        "install torch_npu and source test/env_npu.sh, or use --device cpu")
    return name


def resolve_device(name: str, local_rank: int = 0, device_id: Optional[int] = None) -> torch.device:
    """The torch.device of this process: ``device_id`` for one process, else the local rank."""
    kind = _kind(name)
    if kind == "cpu":
        return torch.device("cpu")
    index = local_rank if device_id is None else device_id
    count = device_count(kind)
    if index >= count:
        raise UserError(f"{kind} device {index} asked for but only {count} visible; "
                        f"check --device-id/--device-list or the visible devices")
    device = torch.device(kind, index)
    getattr(torch, kind).set_device(device)
    return device


def synchronize(device: torch.device) -> None:
    if device.type in ("cuda", "npu"):
        getattr(torch, device.type).synchronize(device)


def supports_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"  # NPU: fp16 + loss scale, as the Ascend seeds train


def dist_backend(device: torch.device) -> str:
    return {"cuda": "nccl", "npu": "hccl"}.get(device.type, "gloo")


def pin_memory(device: torch.device) -> bool:
    return device.type in ("cuda", "npu")


def manual_seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds cuda (and npu through torch_npu's hooks)


def rng_state() -> dict:
    import random

    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import random

    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
