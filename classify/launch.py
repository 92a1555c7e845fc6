"""Start one ``main.py`` worker per device through ``torch.distributed.run`` (torchrun's agent).

Used by ``main_8p.py`` (the ModelZoo main-8p flags) and by ``main.py
--multiprocessing-distributed`` (pytorch/examples). No training logic here: the workers
run ``main.py`` with the same flags, and read rank/world size from the environment.

Flags understood here (everything else goes to the workers unchanged):
``--nproc_per_node N``, ``--device-list/--device_list 0,1,..`` and ``--visible_devices``
(which devices, and how many workers), ``--device-id/--device_id N`` (without a device
list: the first device, the workers use N..N+nproc-1; ignored on cpu),
``--world-size``/``--rank`` (pytorch/examples:
number of nodes and this node's rank when ``--multiprocessing-distributed``), ``--addr``
and ``--dist-url tcp://HOST:PORT`` (node 0, the rendezvous of several nodes; one node
always takes a free local port), ``--max-restarts``.

A worker that dies stops the job: torchrun's agent terminates the others and this module
prints one line naming the rank that failed first.

``plan(argv)`` resolves all of it (device kind, workers, devices, nodes, the torchrun and
worker command lines) without changing anything; ``launch(argv, validate, dry_run=True)``
stops right after ``validate`` (``main_8p.py --check``).
"""

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlparse

from .config import OneLineParser, parse_int_list
from .errors import UserError

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

__all__ = ["Plan", "plan", "launch", "launcher_parser", "first_failure"]

MAIN = str(Path(__file__).resolve().parent.parent / "main.py")


class _LauncherParser(OneLineParser):
    def error(self, message: str):  # one line, as every other launcher error (main_8p.py prints it)
        raise UserError(f"{message}; see main_8p.py --help")


def launcher_parser() -> OneLineParser:
    # No prefix matching: a worker flag must never be taken for a launcher flag (e.g. --dev).
    p = _LauncherParser(add_help=False, allow_abbrev=False)
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
    # the first device when no --device-list names them (the launcher scripts' --device_id)
    add("--device-id", "--device_id", dest="device_id", type=int, default=None)
    return p


def _workers(kind: str, nproc_per_node: Optional[int], device_list: Optional[List[int]],
             first: Optional[int]) -> Tuple[int, Optional[Tuple[int, ...]]]:
    """(workers on this node, the accelerator ids they use; None on cpu)."""
    if nproc_per_node is not None:
        if nproc_per_node < 1:
            raise UserError(f"--nproc_per_node must be >= 1, got {nproc_per_node}")
        if device_list and len(device_list) != nproc_per_node:
            raise UserError(f"--nproc_per_node {nproc_per_node} but {len(device_list)} devices in "
                            f"--device-list/--visible_devices {','.join(map(str, device_list))}; "
                            "give one worker per listed device")
    if device_list is not None and (not device_list or min(device_list) < 0):
        raise UserError(f"--device-list '{','.join(map(str, device_list))}' is not a list of device ids "
                        "(0, 1, ...); check the list")
    if first is not None and first < 0:
        raise UserError(f"--device-id must be >= 0, got {first}")
    if kind == "cpu":  # device ids mean nothing to gloo processes
        return nproc_per_node or (len(device_list) if device_list else 2), None  # a laptop: two
    from . import devices

    count = devices.device_count(kind)
    if device_list:
        if max(device_list) >= count:
            raise UserError(f"--device-list {','.join(map(str, device_list))} names devices that do not "
                            f"exist ({count} visible); check the list")
        return len(device_list), tuple(device_list)
    start = first or 0
    nproc = nproc_per_node if nproc_per_node is not None else max(1, count - start)
    if start + nproc > count:
        asked = f"--nproc_per_node {nproc}" if nproc_per_node is not None else f"{nproc} worker"
        raise UserError(f"{asked} needs {nproc} {kind} devices (from device {start}) but {count} are visible; "
                        "pass a smaller --nproc_per_node (--rank_size of test/*_8p.sh), a lower --device-id, "
                        "or --device cpu")
    return nproc, tuple(range(start, start + nproc))


def _nodes(world_size: Optional[int], rank: Optional[int]) -> Tuple[int, int]:
    """(number of nodes, this node's rank): pytorch/examples' --world-size/--rank with
    --multiprocessing-distributed."""
    nnodes, node_rank = world_size or 1, rank or 0
    if nnodes < 1:
        raise UserError(f"--world-size (number of nodes) must be >= 1, got {world_size}")
    if not 0 <= node_rank < nnodes:
        raise UserError(f"--rank {node_rank} is not a node rank for --world-size {nnodes} nodes; "
                        f"use 0..{nnodes - 1}")
    return nnodes, node_rank


def _rendezvous(addr: Optional[str], dist_url: Optional[str], nnodes: int) -> Tuple[Optional[str], Optional[int]]:
    """(host, port) of node 0 from --addr / --dist-url tcp://HOST:PORT (env://: MASTER_ADDR/PORT)."""
    host, port = addr, None
    if dist_url and dist_url != "env://":
        url = urlparse(dist_url)
        if url.scheme != "tcp" or not url.hostname:
            raise UserError(f"--dist-url '{dist_url}' is not tcp://HOST:PORT or env://")
        host = host or url.hostname
        port = url.port
    elif dist_url == "env://" or nnodes > 1:  # pytorch/examples' env://: MASTER_ADDR/MASTER_PORT
        host = host or os.environ.get("MASTER_ADDR")
        port = int(os.environ["MASTER_PORT"]) if os.environ.get("MASTER_PORT", "").isdigit() else None
    if nnodes > 1 and host is None:
        # Every node would wait on its own 127.0.0.1: a hang, not an error.
        raise UserError(f"{nnodes} nodes need the address of node 0: pass --addr HOST or "
                        "--dist-url tcp://HOST:PORT (the same on every node)")
    return host, port


def _strip_script(rest: List[str]) -> List[str]:
    """MindSpore style ``main_8p.py ... main.py --flags``: drop the script name."""
    return [a for a in rest if not (a.endswith(".py") and Path(a).name in ("main.py", "train.py"))]


@dataclass(frozen=True)
class Plan:
    """What ``launch`` would start, resolved from its argv (nothing changed yet)."""

    kind: str  # cpu | cuda | npu
    nnodes: int
    node_rank: int
    nproc: int  # workers on this node
    devices: Optional[Tuple[int, ...]]  # the accelerator ids the workers use; None on cpu
    visible: Optional[str]  # VISIBLE_DEVICES_ENV[kind] for the workers; None: leave it as it is
    torchrun: List[str]  # torch.distributed.run's flags
    worker_args: List[str]  # main.py's

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc


def plan(argv: List[str]) -> Plan:
    """Resolve the launcher flags of ``argv``; a one-line ``UserError`` for a bad one."""
    from .devices import resolve_kind

    args, rest = launcher_parser().parse_known_args(argv)
    kind = resolve_kind(args.device)
    nproc, devices = _workers(kind, args.nproc_per_node, args.device_list, args.device_id)
    # Restrict what the workers see when the devices were named (local rank i -> devices[i]).
    named = kind != "cpu" and (bool(args.device_list) or (args.device_id or 0) > 0)
    visible = ",".join(map(str, devices)) if named else None
    nnodes, node_rank = _nodes(args.world_size, args.rank)
    host, port = _rendezvous(args.addr, args.dist_url, nnodes)
    torchrun = [f"--nnodes={nnodes}", f"--nproc_per_node={nproc}", f"--max-restarts={args.max_restarts}"]
    if nnodes == 1:
        # One node needs no known port: a free one on localhost, so that two jobs on one machine
        # (both with the ModelZoo scripts' --dist-url tcp://127.0.0.1:50000) do not collide.
        torchrun.append("--standalone")
    else:
        torchrun += [f"--node_rank={node_rank}", f"--master_addr={host or '127.0.0.1'}",
                     f"--master_port={port or 29500}"]
    return Plan(kind=kind, nnodes=nnodes, node_rank=node_rank, nproc=nproc, devices=devices, visible=visible,
                torchrun=torchrun, worker_args=[f"--device={args.device}", *_strip_script(rest)])


def launch(argv: List[str], validate: Optional[Callable[[List[str], int, int], object]] = None,
           dry_run: bool = False) -> int:
    """Start the workers; ``validate(worker_argv, world_size, local_world)`` runs first, in this
    process, so that a usage error is one line before any worker starts. ``dry_run``: stop
    right after the validation (0), with nothing started and the environment untouched."""
    p = plan(argv)
    if validate is not None:
        validate(p.worker_args, p.world_size, p.nproc)
    if dry_run:
        return 0
    from .devices import VISIBLE_DEVICES_ENV, cpu_count

    if p.visible is not None:
        os.environ[VISIBLE_DEVICES_ENV[p.kind]] = p.visible
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // p.nproc)))
    return _run_torchrun(p.torchrun + [MAIN] + p.worker_args)


def _run_torchrun(argv: List[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        rank, failure = first_failure(e.failures)
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        print(f"error: worker rank {rank} failed ({how}); the other workers were stopped. "
              f"See rank {rank}'s messages above", file=sys.stderr, flush=True)
        return failure.exitcode if failure.exitcode > 0 else 1
    except SignalException as e:  # Ctrl-C / SIGTERM to the launcher: torchrun has stopped the workers
        name = signal.Signals(e.sigval).name
        print(f"error: interrupted by {name}; the workers were stopped", file=sys.stderr, flush=True)
        return 128 + int(e.sigval)
    return 0


# How the agent stops the surviving workers (SIGTERM; 128+n when a worker's handler exits
# with it): such failures are consequences, never the cause.
_STOPPED = {-signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGINT}


def first_failure(failures: Dict[int, "ProcessFailure"]) -> Tuple[int, "ProcessFailure"]:
    """The rank that failed first. torchelastic orders failures by a timestamp in whole
    seconds (ties: the order it polled them in, lowest local rank first), so when one worker
    is killed and a peer then fails on the broken connection within the same poll, the
    peer can come first. Among the earliest, prefer a death by a signal the agent does not
    send (SIGKILL: the OOM killer, SIGSEGV, ...) over an exit, and anything over a stop."""
    earliest = min(f.timestamp for f in failures.values())
    tied = [(rank, f) for rank, f in failures.items() if f.timestamp == earliest]

    def weight(item):
        code = item[1].exitcode
        return 2 if code in _STOPPED else (0 if code < 0 else 1)

    return min(tied, key=weight)  # min is stable: torchelastic's order among equals
