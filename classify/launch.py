"""Start one ``main.py`` worker per device through ``torch.distributed.run`` (torchrun's agent).

Used by ``main_8p.py`` (the ModelZoo main-8p flags) and by ``main.py
--multiprocessing-distributed`` (pytorch/examples). No training logic here: the workers
run ``main.py`` with the same flags, and read rank/world size from the environment.

Flags understood here (everything else goes to the workers unchanged):
``--nproc_per_node N``, ``--device-list/--device_list 0,1,..`` and ``--visible_devices``
(which devices, and how many workers), ``--world-size``/``--rank`` (pytorch/examples:
number of nodes and this node's rank when ``--multiprocessing-distributed``), ``--addr``
and ``--dist-url tcp://HOST:PORT`` (the rendezvous), ``--max-restarts``.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional, Tuple
from urllib.parse import urlparse

from .config import OneLineParser, parse_int_list
from .errors import UserError

__all__ = ["launch", "launcher_parser"]

MAIN = str(Path(__file__).resolve().parent.parent / "main.py")
_VISIBLE_ENV = {"cuda": "CUDA_VISIBLE_DEVICES", "npu": "ASCEND_RT_VISIBLE_DEVICES"}


def launcher_parser() -> OneLineParser:
    p = OneLineParser(add_help=False)
    add = p.add_argument
    add("--nproc_per_node", "--nproc-per-node", type=int, default=None)
    add("--device-list", "--device_list", "--visible_devices", "--visible-devices", dest="device_list",
        type=parse_int_list, default=None)
    add("--world-size", "--world_size", type=int, default=None)
    add("--rank", type=int, default=None)
    add("--addr", default=None)
    add("--dist-url", "--dist_url", default=None)
    add("--max-restarts", "--max_restarts", type=int, default=0)
    add("--device", default="auto")
    return p


def _device_kind(name: str) -> str:
    from .devices import _kind

    return _kind(name)


def _nproc(args: argparse.Namespace, kind: str) -> int:
    if args.nproc_per_node is not None:
        if args.nproc_per_node < 1:
            raise UserError(f"--nproc_per_node must be >= 1, got {args.nproc_per_node}")
        return args.nproc_per_node
    if args.device_list:
        return len(args.device_list)
    if kind == "cpu":
        return 2  # a laptop: two gloo processes
    from .devices import device_count

    return max(1, device_count(kind))


def _rendezvous(args: argparse.Namespace) -> Tuple[Optional[str], Optional[int]]:
    host, port = args.addr, None
    if args.dist_url and args.dist_url != "env://":
        url = urlparse(args.dist_url)
        host = host or url.hostname
        port = url.port
    return host, port


def _strip_script(rest: List[str]) -> List[str]:
    """MindSpore style ``main_8p.py ... main.py --flags``: drop the script name."""
    return [a for a in rest if not (a.endswith(".py") and Path(a).name in ("main.py", "train.py"))]


def launch(argv: List[str], validate: Optional[Callable[[List[str], int, int], None]] = None) -> int:
    """Start the workers; ``validate(worker_argv, world_size, local_world)`` runs first, in this
    process, so that a usage error is one line before any worker starts."""
    args, rest = launcher_parser().parse_known_args(argv)
    kind = _device_kind(args.device)
    nproc = _nproc(args, kind)
    if args.device_list and kind != "cpu":
        from .devices import device_count

        if max(args.device_list) >= device_count(kind):
            raise UserError(f"--device-list {','.join(map(str, args.device_list))} names devices that do not "
                            f"exist ({device_count(kind)} visible); check the list")
        os.environ[_VISIBLE_ENV[kind]] = ",".join(map(str, args.device_list))
    nnodes, node_rank = args.world_size or 1, args.rank or 0
    host, port = _rendezvous(args)
    torchrun = [f"--nnodes={nnodes}", f"--nproc_per_node={nproc}", f"--max-restarts={args.max_restarts}"]
    if nnodes == 1 and port is None:
        torchrun.append("--standalone")  # a free port on localhost
    else:
        torchrun += [f"--node_rank={node_rank}", f"--master_addr={host or '127.0.0.1'}",
                     f"--master_port={port or 29500}"]
    worker_args = [f"--device={args.device}", *_strip_script(rest)]
    if validate is not None:
        validate(worker_args, nnodes * nproc, nproc)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpus // nproc)))
    return _run_torchrun(torchrun + [MAIN] + worker_args)


def _run_torchrun(argv: List[str]) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        print(f"error: worker rank {rank} failed ({how}); the other workers were stopped. "
              f"See rank {rank}'s messages above", file=sys.stderr, flush=True)
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0
