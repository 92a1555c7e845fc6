"""torch.distributed setup from the environment torchrun / main_8p.py provide.

Rank and world size come from RANK / WORLD_SIZE / LOCAL_RANK (torchrun, multi-node
included). One process with none of them set runs without a process group.
"""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .devices import dist_backend, dist_ready

__all__ = ["DistInfo", "dist_info_from_env", "init_distributed", "all_reduce_sum", "gather_objects",
           "broadcast_buffers", "cleanup"]


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
