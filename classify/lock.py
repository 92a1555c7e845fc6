"""One output dir, one job: an exclusive lock file, ``<output_dir>/.classify.lock``.

The file holds one JSON line: ``host``, ``pid``, ``start`` (seconds since the epoch) and
``job``. Under torchrun the job is the rendezvous id (``TORCHELASTIC_RUN_ID``, the same on
every node and in every restart generation) and the pid is the agent's (the worker's parent,
alive across restarts); a plain ``main.py`` process is its own job. It is created atomically
(a complete temp file hard-linked into place: ``link`` fails if the name exists, also on NFS).

What a run does with a lock it finds:
- its own job's (an earlier generation of this torchrun job): takes it over silently, and the
  run knows it is a restart (``OutputLock.restarted``);
- a dead process's on this host (a stale lock): takes it over with a one-line notice;
- a live job's on this host, or any lock of another host: one-line error, nothing touched,
  unless ``--force-output-dir`` (then a notice).
"""

import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from .atomic import publish
from .distributed import gather_objects
from .errors import UserError
from .outdir import LOCK_NAME, create_output_dir, prepare_output_dir

__all__ = ["LOCK_NAME", "Holder", "OutputLock", "acquire", "output_lock", "check_free", "held_by", "release_job",
           "this_job"]



@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    start: float
    job: Optional[str] = None

    def since(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.start))


def this_job() -> Holder:
    """Who this process works for: under torchrun its agent (pid) and rendezvous id (job)."""
    job = os.environ.get("TORCHELASTIC_RUN_ID") or None
    return Holder(host=socket.gethostname(), pid=os.getppid() if job else os.getpid(), start=time.time(), job=job)


def _read(path: Path) -> Optional[Holder]:
    """The holder in ``path``; None when there is no file. An unreadable file reads as a
    holder nobody can be (a dead pid on this host: stale)."""
    try:
        data = json.loads(path.read_text())
        return Holder(host=str(data["host"]), pid=int(data["pid"]), start=float(data["start"]),
                      job=data.get("job"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Holder(host=socket.gethostname(), pid=-1, start=0.0)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _write(path: Path, me: Holder, *, replace: bool) -> bool:
    """Publish ``me`` into ``path``: a new file only (False if one exists), or replacing it."""
    return publish(lambda f: f.write(json.dumps(asdict(me)) + "\n"), path, binary=False, replace=replace)


def _in_use(path: Path, held: Holder) -> UserError:
    return UserError(f"output dir '{path.parent}' is in use by job {held.pid} on {held.host} since {held.since()}; "
                     "pass another --output-dir or stop that job")


def _verdict(path: Path, held: Holder, me: Holder, force: bool) -> Optional[str]:
    """What to do with ``held``'s lock: None = it is ours (same job), a notice = take it over;
    raises the one-line error when it must be respected."""
    if held.job is not None and held.job == me.job:
        return None
    if held.host == me.host and not _alive(held.pid):
        return (f"=> output dir '{path.parent}': taking over the stale lock of job {held.pid} on {held.host} "
                f"(since {held.since()}; that process is gone)")
    if force:
        return (f"=> output dir '{path.parent}': --force-output-dir: taking over the lock of job {held.pid} on "
                f"{held.host} (since {held.since()})")
    raise _in_use(path, held)


class OutputLock:
    """A held lock; ``restarted``: it was this job's already (an earlier restart generation)."""

    def __init__(self, path: Path, me: Holder, restarted: bool):
        self.path, self.me, self.restarted = path, me, restarted

    def release(self) -> None:
        """Remove the file if it is still ours (a ``--force-output-dir`` job may have taken it)."""
        held = _read(self.path)
        if held is not None and (held.host, held.pid, held.job) == (self.me.host, self.me.pid, self.me.job):
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def acquire(output_dir: Path, *, force: bool = False,
            notice: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)) -> OutputLock:
    """Take ``<output_dir>/.classify.lock`` (the folder exists); a one-line ``UserError`` when
    another job holds it."""
    path, me = Path(output_dir) / LOCK_NAME, this_job()
    for _ in range(5):  # two jobs racing for a stale lock: the loser sees the winner next time round
        if _write(path, me, replace=False):
            return OutputLock(path, me, restarted=False)
        held = _read(path)
        if held is None:  # released in between
            continue
        message = _verdict(path, held, me, force)
        _write(path, me, replace=True)
        if _read(path) == me:
            if message:
                notice(message)
            return OutputLock(path, me, restarted=message is None)
    raise _in_use(path, _read(path) or me)


def check_free(output_dir: Path, *, job: str, force: bool = False) -> None:
    """The launcher's check before any process starts (nothing written): the one-line error
    when another job holds the dir."""
    path = Path(output_dir).expanduser() / LOCK_NAME
    held = _read(path)
    if held is not None:
        _verdict(path, held, Holder(host=socket.gethostname(), pid=os.getpid(), start=time.time(), job=job), force)


def held_by(output_dir: Path, job: str) -> bool:
    """``output_dir``'s lock is ``job``'s (another node of that job, or an earlier generation, holds it)."""
    held = _read(Path(output_dir).expanduser() / LOCK_NAME)
    return held is not None and held.job is not None and held.job == job


def release_job(output_dir: Path, *, job: str) -> None:
    """The launcher, when its agent has finished: remove the lock its workers left (a failed or
    stopped run keeps it for the next restart generation), if it is this job's on this host."""
    path = Path(output_dir).expanduser() / LOCK_NAME
    held = _read(path)
    if held is not None and held.job == job and (held.host, held.pid) == (socket.gethostname(), os.getpid()):
        OutputLock(path, held, restarted=False).release()


@contextlib.contextmanager
def output_lock(output_dir: Path, *, is_main: bool, force: bool = False):
    """A run's hold on its output dir (rank 0 takes the lock); yields, on every rank, whether
    this is a restart of the same torchrun job (its lock was there already, or the agent's
    restart count is above 0). Released when the run ends well; a run under torchrun that
    fails or is stopped keeps it for the workers the agent starts next (the launcher removes
    it when the agent is done, a later job on this host takes over a stale one)."""
    lock, created = None, None
    if is_main:
        folder = prepare_output_dir(Path(output_dir))
        created = folder if not folder.exists() else None
        while created is not None and not created.parent.exists():  # the topmost folder made here
            created = created.parent
        create_output_dir(folder)
        lock = acquire(folder, force=force)
    restarted = gather_objects(bool(lock and lock.restarted))[0]
    restarted = restarted or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
    try:
        yield restarted
    except BaseException:
        if lock is not None and lock.me.job is None:
            lock.release()
            _remove_if_empty(created)
        raise
    if lock is not None:
        lock.release()
        _remove_if_empty(created)


def _remove_if_empty(folder: Optional[Path]) -> None:
    """Folders the lock created (``folder``, the topmost, and those below it down to the output
    dir) that nothing else wrote into (the run failed before it started writing) are removed
    again: an error found before training leaves no empty output dir."""
    if folder is not None:
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            folder.rmdir()
