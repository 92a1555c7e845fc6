"""Everything device-specific lives here: resolution, synchronisation, capabilities, RNG,
and the small process-level facts the rest of the engine shares (CPU count, whether a
process group is up, which device a collective runs on).

``--device auto`` picks npu when ``torch_npu`` imports and sees an NPU, else cuda, else cpu.
"""

import functools
import importlib
import os
import random
from typing import FrozenSet, Optional

import numpy as np
import torch
import torch.distributed as dist

from .errors import UserError

__all__ = ["use_deterministic", "resolve_kind", "resolve_device", "synchronize", "supports_bf16", "cpu_native_bf16",
           "cpu_flags", "cpuinfo_flags", "device_count", "npu_available",
           "dist_backend", "pin_memory", "manual_seed_all", "rng_state", "set_rng_state", "cpu_count",
           "dist_ready", "collective_device", "check_device_index", "VISIBLE_DEVICES_ENV", "KINDS"]

KINDS = ("cpu", "cuda", "npu")
_ALIASES = {"gpu": "cuda"}
# The environment variable that restricts which accelerators a process sees.
VISIBLE_DEVICES_ENV = {"cuda": "CUDA_VISIBLE_DEVICES", "npu": "ASCEND_RT_VISIBLE_DEVICES"}


def npu_available() -> bool:
    try:
        importlib.import_module("torch_npu")
    except Exception:
        return False
    return hasattr(torch, "npu") and torch.npu.is_available()


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a Slurm/cgroup allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def device_count(kind: str) -> int:
    if kind == "cuda":
        return torch.cuda.device_count()
    if kind == "npu":
        return torch.npu.device_count() if npu_available() else 0
    return cpu_count()


def resolve_kind(name: str) -> str:
    """``--device`` value -> cpu | cuda | npu; a one-line ``UserError`` when it is not there."""
    name = _ALIASES.get(name, name)
    if name == "auto":
        if npu_available():
            return "npu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in KINDS:
        raise UserError(f"unknown --device '{name}'; use auto, cpu, cuda (gpu) or npu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for but no CUDA device is visible; use --device cpu")
    if name == "npu" and not npu_available():
        raise UserError("--device npu asked for but torch_npu is not installed or sees no NPU; "
                        "install torch_npu and source test/env_npu.sh, or use --device cpu")
    return name


def check_device_index(kind: str, index: int) -> None:
    """One line when device ``index`` of ``kind`` is not visible to this process."""
    count = device_count(kind)
    if index >= count:
        raise UserError(f"{kind} device {index} asked for but only {count} visible; "
                        f"check --device-id/--device-list or the visible devices")


def resolve_device(name: str, local_rank: int = 0, device_id: Optional[int] = None) -> torch.device:
    """The torch.device of this process: ``device_id`` for one process, else the local rank."""
    kind = resolve_kind(name)
    if kind == "cpu":
        return torch.device("cpu")
    index = local_rank if device_id is None else device_id
    check_device_index(kind, index)
    device = torch.device(kind, index)
    getattr(torch, kind).set_device(device)
    return device


def synchronize(device: torch.device) -> None:
    if device.type in ("cuda", "npu"):
        getattr(torch, device.type).synchronize(device)


def supports_bf16(device: torch.device) -> bool:
    """bf16 autocast works here (on a CPU always: oneDNN emulates it where the CPU lacks it)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"  # NPU: fp16 + loss scale, as the Ascend seeds train


# CPU features that compute in bf16 natively: x86 AVX512_BF16 (Cooper Lake, Zen 4+) and AMX-BF16
# (Sapphire Rapids+); Arm's BF16 extension (Graviton3+, Neoverse V1/N2; /proc/cpuinfo says
# "bf16"/"svebf16", torch's probe "bf16"/"sve_bf16"). Without them oneDNN emulates bf16 through
# fp32, slower than plain fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16", "sve_bf16", "svebf16"})


@functools.lru_cache(maxsize=None)
def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags: torch's own cpuinfo probe (``torch.cpu.get_capabilities`` in
    recent torch), else the ``flags``/``Features`` lines of /proc/cpuinfo (Linux); empty when
    neither is there."""
    probe = getattr(torch.cpu, "get_capabilities", None)
    if probe is not None:
        try:
            return frozenset(name for name, value in probe().items() if value is True)
        except Exception:  # an unusual CPU that cpuinfo cannot read: fall back to the kernel's view
            pass
    try:
        with open("/proc/cpuinfo") as f:
            return cpuinfo_flags(f.read())
    except OSError:
        return frozenset()


def cpuinfo_flags(text: str) -> FrozenSet[str]:
    """The feature flags in /proc/cpuinfo's text: x86 ``flags : ...``, Arm ``Features : ...``."""
    lines = [line for line in text.splitlines() if line.startswith(("flags", "Features"))]
    return frozenset(flag for line in lines for flag in line.split(":", 1)[1].split())


def cpu_native_bf16() -> bool:
    """This CPU computes bf16 natively (then bf16 autocast trains faster than fp32 on it)."""
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


def dist_backend(device: torch.device) -> str:
    return {"cuda": "nccl", "npu": "hccl"}.get(device.type, "gloo")


def dist_ready() -> bool:
    """A process group is up (torch.distributed built in and initialised)."""
    return dist.is_available() and dist.is_initialized()


def collective_device(device: torch.device) -> torch.device:
    """Where a tensor for a collective must live: gloo reduces CPU tensors, nccl/hccl device ones."""
    return torch.device("cpu") if dist.get_backend() == "gloo" else device


def pin_memory(device: torch.device) -> bool:
    return device.type in ("cuda", "npu")


def manual_seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds cuda (and npu through torch_npu's hooks)


def _accelerator_rng():
    """(name, torch module) of the initialised accelerator whose generators to save, or None."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return "cuda", torch.cuda
    if hasattr(torch, "npu") and npu_available() and getattr(torch.npu, "is_initialized", lambda: True)():
        return "npu", torch.npu  # only when this process uses it: saving would initialise every NPU
    return None


def rng_state() -> dict:
    """Every generator this process draws from, as tensors and plain values only (so that a
    checkpoint holding it loads with ``torch.load(weights_only=True)``)."""
    version, mt, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    accelerator = _accelerator_rng()
    if accelerator is not None:
        name, module = accelerator
        state[name] = module.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` saved (also the tuple form older checkpoints hold)."""
    py, npy = state["python"], state["numpy"]
    if isinstance(py, dict):
        py = (py["version"], tuple(py["state"].tolist()), py["gauss"])
    random.setstate(py)
    if isinstance(npy, dict):
        npy = {"bit_generator": "MT19937", "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
               "has_gauss": npy["has_gauss"], "gauss": npy["gauss"]}
    np.random.set_state(npy)
    torch.set_rng_state(state["torch"])
    accelerator = _accelerator_rng()
    if accelerator is not None and accelerator[0] in state:  # a resume on another kind skips it
        accelerator[1].set_rng_state_all(state[accelerator[0]])


def use_deterministic() -> str:
    """``--deterministic``: deterministic kernels everywhere (an op without one raises), cuDNN's
    deterministic algorithms without autotuning, and cuBLAS's fixed workspace (must be set
    before cuBLAS starts: a run calls this before it builds anything). Returns what was set."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return (f"torch.use_deterministic_algorithms(True), cudnn.deterministic, cudnn.benchmark off, "
            f"CUBLAS_WORKSPACE_CONFIG={os.environ['CUBLAS_WORKSPACE_CONFIG']}")
