"""Files that are never seen half-written: write a temp file beside the target, fsync it,
``os.replace`` it into place (and fsync the folder). A crash, a kill or a full disk
mid-write leaves the previous file (or none) where the target is.

The one place for it: checkpoints (``classify.checkpoint``), the file index
(``classify.data.index``), shards (``tools/make_shards.py``), ``config.json``/``summary.json``
(``classify.report``), ``curves.png`` (``classify.plots``), the output-dir lock
(``classify.lock``: ``publish`` with ``replace=False``, a hard link that fails when the name
exists) and the demo set (``publish_tree``: a whole folder). Standard library only.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

__all__ = ["write_atomic", "write_bytes", "write_text", "write_json", "copy_atomic", "publish", "publish_tree",
           "fsync_dir", "unlink"]


def _umask() -> int:
    """The process's umask. Read from /proc where the kernel shows it: setting it to read it
    (``os.umask``) would race with files other threads create meanwhile (make_shards writes
    shards from a thread pool)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def unlink(path) -> None:
    """Remove ``path`` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fsync_dir(folder: os.PathLike) -> None:
    """Make a rename in ``folder`` durable (best effort: not every filesystem allows it)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _temp_beside(path: Path, binary: bool):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    return os.fdopen(fd, "wb" if binary else "w"), tmp


def publish(write: Callable[[IO], None], path: os.PathLike, *, binary: bool = True, replace: bool = True) -> bool:
    """Fill a temp file in ``path``'s folder through ``write(file)``, fsync it and put it at
    ``path``: replacing what is there (``replace``), or only where nothing is (a hard link,
    which fails if the name exists, also on NFS: returns False then). The temp file never
    stays behind."""
    path = Path(path)
    f, tmp = _temp_beside(path, binary)
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                unlink(tmp)
    except BaseException:
        unlink(tmp)
        raise
    fsync_dir(path.parent)
    return True


def write_atomic(write: Callable[[IO], None], path: os.PathLike) -> None:
    """``publish`` in binary, replacing the file."""
    publish(write, path)


def write_bytes(data: bytes, path: os.PathLike) -> None:
    publish(lambda f: f.write(data), path)


def write_text(text: str, path: os.PathLike) -> None:
    publish(lambda f: f.write(text), path, binary=False)


def write_json(obj: Any, path: os.PathLike, *, indent: int = 2) -> None:
    """``obj`` as JSON (indented, a final newline), atomically."""
    write_text(json.dumps(obj, indent=indent) + "\n", path)


def copy_atomic(source: os.PathLike, path: os.PathLike) -> None:
    """``path`` becomes a copy of ``source``, atomically. The copy runs in the kernel
    (copy_file_range; a reflink where the filesystem has them), so no bytes pass through
    Python. A copy rather than a hard link: each file stays independent, so overwriting one
    in place cannot change the other."""
    publish(lambda f: _copy_into(Path(source), f), path)


def _copy_into(source: Path, f) -> None:
    with open(source, "rb") as src:
        try:
            size = os.fstat(src.fileno()).st_size
            done = 0
            while done < size:  # in-kernel copy
                n = os.copy_file_range(src.fileno(), f.fileno(), size - done)
                if n == 0:
                    break
                done += n
            if done == size:
                return
        except (AttributeError, OSError):  # no copy_file_range (not Linux, old kernel, some FUSE mounts)
            pass
        src.seek(0)
        f.seek(0)
        f.truncate()
        shutil.copyfileobj(src, f, 16 << 20)


def publish_tree(root: os.PathLike, write: Callable[[Path], None], is_complete: Callable[[Path], bool], *,
                 stale_s: float = 3600.0) -> Path:
    """Generate a folder at ``root`` without ever leaving a half-written one there.

    ``write(tmp)`` fills a fresh temporary sibling folder (``.<name>.tmp-*``), which is then
    renamed to ``root``. Safe for concurrent callers: each one writes its own copy; ``rename``
    onto an existing non-empty folder fails, so the first finisher wins and the others delete
    their copy and use the winner's, provided ``is_complete(root)`` says it is one (else the
    rename's ``OSError`` propagates). An empty ``root`` (e.g. made by the user) is replaced.
    Temporary trees that a killed process left behind are removed once ``stale_s`` old."""
    import time

    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    for old in root.parent.glob(f".{root.name}.tmp-*"):
        try:
            if time.time() - old.stat().st_mtime > stale_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # another process removed it first
            pass
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        write(tmp)
        try:
            os.rmdir(root)  # an empty folder (e.g. made by the user) does not block us
        except OSError:
            pass
        try:
            os.rename(tmp, root)
        except OSError:
            if not is_complete(root):  # lost to something that is not a finished tree
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op when the rename succeeded
    return root
