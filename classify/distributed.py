"""torch.distributed setup from the environment torchrun / main_8p.py provide.

Rank and world size come from RANK / WORLD_SIZE / LOCAL_RANK (torchrun, multi-node
included). One process with none of them set runs without a process group.
"""

import datetime
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .devices import dist_backend, dist_ready

__all__ = ["DistInfo", "dist_info_from_env", "init_distributed", "all_reduce_sum", "gather_objects",
           "broadcast_buffers", "cleanup", "lost_peer"]

# What a collective raises when another rank died (gloo: pair.cc; nccl/hccl: a watchdog abort).
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "connectFullMesh failed", "Broken pipe",
              "NCCL communicator was aborted", "ProcessGroupNCCL watchdog")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env() -> DistInfo:
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return DistInfo(rank=int(env.get("RANK", "0")), world_size=world,
                    local_rank=int(env.get("LOCAL_RANK", "0")),
                    local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))))


def init_distributed(info: DistInfo, device: torch.device, *, backend: str = None,
                     timeout_s: float = 600.0) -> None:
    """Join the process group (env:// rendezvous set up by torchrun)."""
    if not info.enabled or dist_ready():
        return
    _stop_with_agent()
    # Fail fast instead of hanging when a peer dies: with async error handling nccl/hccl abort
    # a collective stuck longer than ``timeout_s`` and end the process, so torchrun's agent
    # sees the failure and stops the job (gloo raises on a closed connection by itself).
    # Read when the process group is created; torch < 2.2 spells it without TORCH_.
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    if _torch_version() < (2, 2):
        os.environ.setdefault("NCCL_ASYNC_ERROR_HANDLING", "1")
    os.environ.setdefault("HCCL_ASYNC_ERROR_HANDLING", "1")
    kwargs = {}
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(backend=backend or dist_backend(device), init_method="env://",
                            rank=info.rank, world_size=info.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s), **kwargs)


def _stop_with_agent() -> None:
    """Under torchrun: get SIGTERM when the agent that started this worker dies (a node lost
    with its agent SIGKILLed). The workers run in their own sessions, so without this an
    orphan would keep training with no agent to stop or restart it; with it, the ranks stop
    at the step they agree on (classify.guard) and rank 0 saves, then the other nodes' agents
    see the job end. Linux only (prctl PR_SET_PDEATHSIG); elsewhere nothing changes."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the agent died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def _torch_version() -> tuple:
    return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2] if x.isdigit())


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank ``src``'s buffers (BatchNorm running statistics). Each rank's last
    forward updated its own copy, so without this a distributed evaluation would normalise
    each shard with different statistics than the checkpoint (rank 0's) holds."""
    if not dist_ready():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=src)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist_ready():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def cleanup() -> None:
    if dist_ready():
        dist.destroy_process_group()


def gather_objects(obj) -> list:
    """Every rank's ``obj`` as a list indexed by rank (``[obj]`` without a process group)."""
    if not dist_ready():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another rank died: a consequence that
    torchrun's agent handles (it stops or restarts the job), not this rank's own failure."""
    return (isinstance(error, RuntimeError) and "WORLD_SIZE" in os.environ
            and any(text in str(error) for text in _PEER_LOST))
