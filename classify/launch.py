"""Start one ``main.py`` worker per device through ``torch.distributed.run`` (torchrun's agent).

Used by ``main_8p.py`` (the ModelZoo main-8p flags) and by ``main.py
--multiprocessing-distributed`` (pytorch/examples). No training logic here: the workers
run ``main.py`` with the same flags, and read rank/world size from the environment.

Flags understood here (everything else goes to the workers unchanged):
``--nproc_per_node N``, ``--device-list/--device_list 0,1,..`` and ``--visible_devices``
(which devices, and how many workers), ``--device-id/--device_id N`` (without a device
list: the first device, the workers use N..N+nproc-1; ignored on cpu),
``--max-restarts``, and torchrun's rendezvous flags ``--nnodes N|MIN:MAX``, ``--rdzv-backend``
(c10d, default; static with ``--node-rank``), ``--rdzv-endpoint HOST:PORT``, ``--rdzv-id``,
``--rdzv-conf``, ``--rdzv-timeout S``. The pytorch/examples forms ``--world-size``/``--rank``
(number of nodes, this node's rank), ``--addr`` and ``--dist-url tcp://HOST:PORT`` map onto the
same rendezvous; without flags the scheduler's ``PET_*`` (Kubeflow) and ``SLURM_*`` variables
are read. One node with no endpoint takes a free local port (torchrun's --standalone).

A worker that dies stops the job (or, with ``--max-restarts``, the agent restarts the workers,
which continue from the newest checkpoint: classify.run, classify.lock); this module prints
one line naming the rank that failed first. Before any worker starts, the output dir's lock
is checked (classify.lock), and a node that is not the endpoint waits at most
``--rdzv-timeout`` for it to answer.

``plan(argv)`` resolves all of it (device kind, workers, devices, nodes, the torchrun and
worker command lines) without changing anything; ``launch(argv, validate, dry_run=True)``
stops right after ``validate`` (``main_8p.py --check``).
"""

import os
import re
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlparse

from .cli import RDZV_TIMEOUT, launcher_parser
from .errors import UserError

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

__all__ = ["Plan", "plan", "launch", "launcher_parser", "first_failure"]

MAIN = str(Path(__file__).resolve().parent.parent / "main.py")


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


@dataclass(frozen=True)
class Rendezvous:
    """How the agents of a job find each other (torchrun's rendezvous flags, resolved)."""

    min_nodes: int
    max_nodes: int
    backend: str  # c10d | static
    endpoint: str  # HOST:PORT; localhost:0 for one node (what torchrun --standalone does)
    run_id: str  # the job: the same on every node and in every restart generation
    node_rank: int  # used by the static backend only (c10d assigns ranks at the rendezvous)
    timeout: int  # seconds a node waits for the endpoint and the other nodes
    conf: str = ""  # extra --rdzv-conf K=V,... passed through

    def torchrun_flags(self) -> List[str]:
        nnodes = str(self.max_nodes) if self.min_nodes == self.max_nodes else f"{self.min_nodes}:{self.max_nodes}"
        t = self.timeout
        conf = f"join_timeout={t},read_timeout={t},timeout={t}" + (f",{self.conf}" if self.conf else "")
        flags = [f"--nnodes={nnodes}", f"--rdzv-backend={self.backend}", f"--rdzv-endpoint={self.endpoint}",
                 f"--rdzv-id={self.run_id}", f"--rdzv-conf={conf}"]
        return flags + ([f"--node-rank={self.node_rank}"] if self.backend == "static" else [])


def _first(*pairs: Tuple[str, Optional[str]]) -> Tuple[Optional[str], Optional[str]]:
    """(where from, value) of the first pair with a value: flags before scheduler variables."""
    for where, value in pairs:
        if value not in (None, ""):
            return where, str(value)
    return None, None


def _nnodes(env, *, nnodes: Optional[str], world_size: Optional[int]) -> Tuple[int, int]:
    """(min, max) from --nnodes N|MIN:MAX, pytorch/examples' --world-size (nodes), PET_NNODES, SLURM_NNODES."""
    if nnodes and world_size is not None and nnodes != str(world_size):
        raise UserError(f"--nnodes {nnodes} and --world-size {world_size} (nodes) disagree; pass one")
    where, text = _first(("--nnodes", nnodes), ("--world-size", world_size),
                         ("PET_NNODES", env.get("PET_NNODES")), ("SLURM_NNODES", env.get("SLURM_NNODES")))
    if text is None:
        return 1, 1
    parts = text.split(":")
    if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"{where} '{text}' is not a number of nodes N or a range MIN:MAX (e.g. 2 or 1:4)")
    lo, hi = int(parts[0]), int(parts[-1])
    if lo < 1:
        raise UserError(f"{where} {text}: the number of nodes must be >= 1")
    if lo > hi:
        raise UserError(f"{where} {text}: the minimum is above the maximum; write MIN:MAX, e.g. {hi}:{lo}")
    return lo, hi


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: ``n[01-04,07],gpu1`` -> ``n01``."""
    head, depth = "", 0
    for ch in nodelist:
        if ch == "," and depth == 0:
            break
        depth += {"[": 1, "]": -1}.get(ch, 0)
        head += ch
    if "[" not in head:
        return head
    prefix, ranges = head.split("[", 1)
    return prefix + re.split(r"[-,\]]", ranges)[0]


def _endpoint(env, max_nodes: int, *, rdzv_endpoint: Optional[str], dist_url: Optional[str],
              addr: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(where from, HOST:PORT) of the rendezvous: --rdzv-endpoint; with several nodes also the
    ModelZoo/pytorch/examples forms (--dist-url tcp://HOST:PORT, --addr, env://: MASTER_ADDR/PORT),
    PET_RDZV_ENDPOINT and the first host of SLURM_JOB_NODELIST."""
    if rdzv_endpoint:
        return "--rdzv-endpoint", rdzv_endpoint
    if max_nodes == 1:  # one node: a free local port (two jobs on one machine must not collide)
        return None, None
    port = env.get("MASTER_PORT") if env.get("MASTER_PORT", "").isdigit() else "29500"
    if dist_url and dist_url != "env://":
        url = urlparse(dist_url)
        return "--dist-url", f"{addr or url.hostname}:{url.port or port}"
    if addr:
        return "--addr", f"{addr}:{port}"
    if dist_url == "env://" and env.get("MASTER_ADDR"):
        return "MASTER_ADDR", f"{env['MASTER_ADDR']}:{port}"
    if env.get("PET_RDZV_ENDPOINT"):
        return "PET_RDZV_ENDPOINT", env["PET_RDZV_ENDPOINT"]
    if env.get("SLURM_JOB_NODELIST"):
        return "SLURM_JOB_NODELIST", f"{first_host(env['SLURM_JOB_NODELIST'])}:{port}"
    if env.get("MASTER_ADDR"):
        return "MASTER_ADDR", f"{env['MASTER_ADDR']}:{port}"
    return None, None


def _check_endpoint(where: str, endpoint: str) -> None:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(f"{where} '{endpoint}' has no port; pass HOST:PORT (e.g. node0:29500), the same on every node")


# The launcher flags _rendezvous reads (classify.cli.launcher_parser's dests).
RDZV_FLAGS = ("nnodes", "world_size", "node_rank", "rank", "rdzv_backend", "rdzv_endpoint", "rdzv_id",
              "rdzv_timeout", "rdzv_conf", "dist_url", "addr")


def _rendezvous(env, *, nnodes: Optional[str], world_size: Optional[int], node_rank: Optional[int],
                rank: Optional[int], rdzv_backend: Optional[str], rdzv_endpoint: Optional[str],
                rdzv_id: Optional[str], rdzv_timeout: int, rdzv_conf: Optional[str], dist_url: Optional[str],
                addr: Optional[str]) -> Rendezvous:
    """The rendezvous of this node's agent from the flags, then the scheduler's environment."""
    if dist_url and dist_url != "env://":
        url = urlparse(dist_url)
        if url.scheme != "tcp" or not url.hostname:
            raise UserError(f"--dist-url '{dist_url}' is not tcp://HOST:PORT or env://")
    lo, hi = _nnodes(env, nnodes=nnodes, world_size=world_size)
    where, node = _first(("--node-rank", node_rank), ("--rank", rank),
                         ("PET_NODE_RANK", env.get("PET_NODE_RANK")), ("SLURM_NODEID", env.get("SLURM_NODEID")))
    if node is not None and (not node.isdigit() or int(node) >= hi):
        raise UserError(f"{where} {node} is not a node rank for {hi} nodes; use 0..{hi - 1}")
    backend = rdzv_backend or env.get("PET_RDZV_BACKEND") or "c10d"
    if backend not in ("c10d", "static"):
        raise UserError(f"--rdzv-backend '{backend}' is not c10d or static")
    source, endpoint = _endpoint(env, hi, rdzv_endpoint=rdzv_endpoint, dist_url=dist_url, addr=addr)
    if endpoint is None and hi > 1:  # every node would wait on its own localhost: a hang, not an error
        raise UserError(f"{hi} nodes need the address of node 0: pass --rdzv-endpoint HOST:PORT (or --addr HOST, "
                        "--dist-url tcp://HOST:PORT), the same on every node")
    if endpoint is not None:
        _check_endpoint(source, endpoint)
    if backend == "static" and lo != hi:
        raise UserError(f"--nnodes {lo}:{hi} (elastic) needs --rdzv-backend c10d; static takes a fixed number")
    if rdzv_timeout < 1:
        raise UserError(f"--rdzv-timeout must be >= 1 second, got {rdzv_timeout}")
    slurm_id = env.get("SLURM_JOB_ID") and ".".join(filter(None, (env["SLURM_JOB_ID"], env.get("SLURM_STEP_ID"))))
    _, run_id = _first(("--rdzv-id", rdzv_id), ("PET_RDZV_ID", env.get("PET_RDZV_ID")),
                       ("SLURM_JOB_ID", slurm_id))  # one srun step: the same on every node
    if run_id is None:  # all nodes must agree: one made from the endpoint; one node: a fresh id
        run_id = f"classify-{endpoint.replace(':', '-')}" if endpoint else uuid.uuid4().hex[:12]
    return Rendezvous(min_nodes=lo, max_nodes=hi, backend=backend if endpoint else "c10d",
                      endpoint=endpoint or "localhost:0", run_id=run_id, node_rank=int(node or 0),
                      timeout=rdzv_timeout, conf=rdzv_conf or "")


def _restarts(env, backend: str, *, max_restarts: Optional[str]) -> int:
    where, text = _first(("--max-restarts", max_restarts), ("PET_MAX_RESTARTS", env.get("PET_MAX_RESTARTS")))
    if text is None:
        return 0
    if not text.isdigit():
        raise UserError(f"{where} '{text}' is not a number of restarts >= 0")
    if int(text) and backend == "static":  # its store outlives the workers: stale keys (pytorch/pytorch#135712)
        raise UserError("--max-restarts needs --rdzv-backend c10d (a static rendezvous cannot restart workers)")
    return int(text)


def _strip_script(rest: List[str]) -> List[str]:
    """MindSpore style ``main_8p.py ... main.py --flags``: drop the script name."""
    return [a for a in rest if not (a.endswith(".py") and Path(a).name in ("main.py", "train.py"))]


@dataclass(frozen=True)
class Plan:
    """What ``launch`` would start, resolved from its argv (nothing changed yet)."""

    kind: str  # cpu | cuda | npu
    nnodes: int  # the most nodes (--nnodes MIN:MAX: MAX)
    node_rank: int
    nproc: int  # workers on this node
    devices: Optional[Tuple[int, ...]]  # the accelerator ids the workers use; None on cpu
    visible: Optional[str]  # VISIBLE_DEVICES_ENV[kind] for the workers; None: leave it as it is
    torchrun: List[str]  # torch.distributed.run's flags
    worker_args: List[str]  # main.py's
    rdzv: Optional[Rendezvous] = None

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc


def plan(argv: List[str], env: Optional[Dict[str, str]] = None) -> Plan:
    """Resolve the launcher flags of ``argv`` (and the scheduler's variables in ``env``, default
    the environment); a one-line ``UserError`` for a bad one or a bad combination."""
    from .devices import resolve_kind

    env = os.environ if env is None else env
    args, rest = launcher_parser().parse_known_args(argv)
    kind = resolve_kind(args.device)
    nproc_env = env.get("PET_NPROC_PER_NODE", "")
    nproc_flag = args.nproc_per_node if args.nproc_per_node is not None else (
        int(nproc_env) if nproc_env.isdigit() else None)
    nproc, devices = _workers(kind, nproc_flag, args.device_list, args.device_id)
    # Restrict what the workers see when the devices were named (local rank i -> devices[i]).
    named = kind != "cpu" and (bool(args.device_list) or (args.device_id or 0) > 0)
    visible = ",".join(map(str, devices)) if named else None
    rdzv = _rendezvous(env, **{name: getattr(args, name) for name in RDZV_FLAGS})
    restarts = _restarts(env, rdzv.backend, max_restarts=args.max_restarts)
    torchrun = [f"--nproc_per_node={nproc}", f"--max-restarts={restarts}",
                *rdzv.torchrun_flags()]
    return Plan(kind=kind, nnodes=rdzv.max_nodes, node_rank=rdzv.node_rank, nproc=nproc, devices=devices,
                visible=visible, torchrun=torchrun, worker_args=[f"--device={args.device}", *_strip_script(rest)],
                rdzv=rdzv)


def launch(argv: List[str], validate: Optional[Callable[[List[str], int, int], object]] = None,
           dry_run: bool = False) -> int:
    """Start the workers; ``validate(worker_argv, world_size, local_world, job=ID)`` runs first, in this
    process, so that a usage error is one line before any worker starts (and when it returns the
    config, an output dir that another job holds too). ``dry_run``: stop right after the
    validation (0), with nothing started and the environment untouched."""
    from .lock import check_free, release_job

    p = plan(argv)
    cfg = validate(p.worker_args, p.world_size, p.nproc, job=p.rdzv.run_id) if validate is not None else None
    out = getattr(getattr(cfg, "output", None), "output_dir", None)
    if out is not None:
        check_free(out, job=p.rdzv.run_id, force=cfg.output.force_output_dir)
    if dry_run:
        return 0
    from .devices import VISIBLE_DEVICES_ENV, cpu_count

    if p.visible is not None:
        os.environ[VISIBLE_DEVICES_ENV[p.kind]] = p.visible
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // p.nproc)))
    # The agent's rendezvous store must not be the workers' store: it outlives a worker
    # generation, so restarted workers read the dead generation's addresses from it and fail
    # in init_process_group (pytorch/pytorch#135712, #167288). With this documented torch
    # setting every rendezvous round gives the workers a fresh store on a fresh port.
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    try:
        return _run_torchrun(p.torchrun + [MAIN] + p.worker_args, p.rdzv)
    finally:
        if out is not None:
            release_job(out, job=p.rdzv.run_id)


def _wait_for_endpoint(rdzv: Rendezvous) -> None:
    """A node that is not the endpoint's host connects to it first, retrying until
    ``--rdzv-timeout``: an endpoint that never answers is one line after a bounded wait (torch
    would print a C++ stack trace and the same conclusion)."""
    from torch.distributed.elastic.rendezvous.utils import _matches_machine_hostname

    host, _, port = rdzv.endpoint.rpartition(":")
    if rdzv.endpoint == "localhost:0" or _matches_machine_hostname(host):
        return
    deadline, reason = time.monotonic() + rdzv.timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=max(0.1, min(5.0, deadline - time.monotonic()))).close()
            return
        except OSError as e:
            reason = e.strerror or type(e).__name__
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    raise UserError(f"rendezvous endpoint {rdzv.endpoint} did not answer from {socket.gethostname()} within "
                    f"--rdzv-timeout {rdzv.timeout} s ({reason}); check that node 0 runs the job and that HOST:PORT "
                    "is reachable from every node")


def _run_torchrun(argv: List[str], rdzv: Optional[Rendezvous] = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    if rdzv is not None:
        _wait_for_endpoint(rdzv)
    try:
        run(parse_args(argv))
    except RendezvousError as e:  # endpoint unreachable, the other nodes never came, ...
        where = f" at {rdzv.endpoint} (job {rdzv.run_id})" if rdzv else ""
        reason = f": {str(e).splitlines()[0]}" if str(e).strip() and str(e) != type(e).__name__ else ""
        print(f"error: rendezvous{where} failed ({type(e).__name__}{reason}); check that every node runs the same "
              f"command and reaches the endpoint (waited at most --rdzv-timeout "
              f"{rdzv.timeout if rdzv else RDZV_TIMEOUT} s)", file=sys.stderr, flush=True)
        return 1
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
