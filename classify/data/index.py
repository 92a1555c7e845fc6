"""The file index of an ImageFolder split: scanned once, cached on disk, held as flat arrays.

``SampleTable`` is the sample list of a split as three numpy arrays -- the encoded relative
paths in one bytes buffer, their offsets, and the labels -- not a Python list of
``(path, label)`` tuples. A forked DataLoader worker reads it without touching a reference
count per sample, so its pages stay shared with the parent (pytorch/pytorch#13246).

``load_table(split, cache_dir)`` returns the table of ``split`` (a folder of class folders),
from the index cache when it is still valid, else by scanning. The first process on a node
that needs an index takes a file lock beside it and scans; the others block on the lock
and then read what it wrote. The kernel drops the lock of a process that dies, so a crashed
scanner never leaves the others waiting: the next one finds no index and scans itself.

An index records, for every folder it walked, the folder's mtime and how many images it
held: adding, removing or renaming a file or a class folder changes a folder's mtime, and
the index is rebuilt (with a one-line notice). A file that is not a readable index is
rebuilt the same way. The scan's rules are ``torchvision.datasets.ImageFolder``'s, with
hidden files and folders left out, and give the same order. Symbolic links are followed, and a
link back to a folder the walk is inside (a loop: ``ln -s . train/red/loop``) is skipped with a
one-line notice: its images are read once, where they are. So is an image name that is not a
regular file (a FIFO or a device would block or never end a read); a broken link stays in, and
counts as an unreadable image when read. A folder the OS refuses to list is a
one-line ``DataError`` naming it.
"""

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..atomic import write_atomic
from ..errors import DataError, os_error_text

__all__ = ["SampleTable", "scan_split", "load_table", "default_index_cache", "index_path", "INDEX_VERSION"]

INDEX_VERSION = 1
Log = Optional[Callable[[str], None]]


class SampleTable:
    """``(path, label)`` per sample, stored flat: ``buffer`` (uint8, the relative paths as
    bytes), ``offsets`` (int64, n + 1) and ``labels`` (int64); ``root`` is the split folder."""

    def __init__(self, root: str, buffer: np.ndarray, offsets: np.ndarray, labels: np.ndarray):
        self.root, self.buffer, self.offsets, self.labels = str(root), buffer, offsets, labels

    def __len__(self) -> int:
        return len(self.labels)

    def relpath(self, index: int) -> str:
        return os.fsdecode(self.buffer[self.offsets[index]:self.offsets[index + 1]].tobytes())

    def path(self, index: int) -> str:
        return os.path.join(self.root, self.relpath(index))

    def __getitem__(self, index: int) -> Tuple[str, int]:
        return self.path(index), int(self.labels[index])

    def subset(self, indices: Sequence[int]) -> "SampleTable":
        """The table of ``indices`` (still flat)."""
        parts = [self.buffer[self.offsets[i]:self.offsets[i + 1]] for i in indices]
        lengths = np.array([len(p) for p in parts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        buffer = np.concatenate(parts) if parts else np.empty(0, np.uint8)
        return SampleTable(self.root, buffer, offsets, self.labels[list(indices)].copy())


def _visible_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def _walk(folder: str, rel: str, out: List[Tuple[str, List[str], int]], skipped: List[Tuple[str, Optional[str]]],
          inside: Tuple[Tuple[Tuple[int, int], str], ...] = ()) -> None:
    """(relative dir, image names, mtime_ns) for ``folder`` and every folder below it
    (symlinks followed, as ImageFolder's ``os.walk(followlinks=True)``). A link back to a folder
    the walk is ``inside`` goes to ``skipped`` as (link, the folder it leads to), an image name
    that is not a regular file as (its path, None)."""
    st = os.stat(folder)
    key = (st.st_dev, st.st_ino)
    for seen, where in inside:
        if seen == key:
            skipped.append((rel, where))
            return
    names, subdirs = [], []
    with os.scandir(folder) as it:
        for e in it:
            if e.is_dir():
                subdirs.append(e.name)
            elif _visible_image(e.name):
                if e.is_file() or not os.path.exists(e.path):  # a broken link: counted unreadable when read
                    names.append(e.name)
                else:
                    skipped.append((f"{rel}/{e.name}", None))
    out.append((rel, sorted(names), st.st_mtime_ns))
    for d in subdirs:
        _walk(os.path.join(folder, d), f"{rel}/{d}", out, skipped, inside + ((key, rel),))


def class_names(split: str) -> List[str]:
    classes = sorted(e.name for e in os.scandir(split) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"no class folders in '{split}'; expected {split}/<class>/*.jpg")
    return classes


def scan_split(split: os.PathLike) -> Tuple[SampleTable, List[str], dict]:
    """Scan ``split``: (table, classes, the record that tells when it changed; its ``skipped``:
    the notices of what the walk left out)."""
    split = str(split)
    try:
        return _scan(split)
    except OSError as e:  # a folder the OS refuses to list or stat (permissions, I/O error, a name too long)
        raise DataError(f"cannot scan '{split}': {os_error_text(e)}") from None


def _scan(split: str) -> Tuple[SampleTable, List[str], dict]:
    classes = class_names(split)
    blobs, lengths, labels, dirs, counts, notices = [], [], [], [], [], []
    for label, name in enumerate(classes):
        walked: List[Tuple[str, List[str], int]] = []
        skipped: List[Tuple[str, Optional[str]]] = []
        _walk(os.path.join(split, name), name, walked, skipped)
        for path, target in skipped:
            why = ("not a regular file (a FIFO, socket or device)" if target is None else
                   f"a symbolic link back to '{os.path.join(split, target)}' (a loop); its images are read once, from there")
            notices.append(f"=> skipped '{os.path.join(split, path)}': {why}")
        walked.sort(key=lambda w: w[0])  # ImageFolder: sorted(os.walk(...))
        count = 0
        for rel, files, mtime in walked:
            encoded = [os.fsencode(f"{rel}/{f}") for f in files]
            blobs.append(b"".join(encoded))
            lengths.append(np.fromiter(map(len, encoded), np.int64, len(encoded)))
            dirs.append([rel, mtime])
            count += len(files)
        counts.append(count)
        labels.append(np.full(count, label, np.int64))
    _check_not_empty(split, classes, counts)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
    buffer = np.frombuffer(b"".join(blobs), np.uint8).copy()
    record = {"split_mtime": os.stat(split).st_mtime_ns, "dirs": dirs, "counts": counts, "skipped": notices}
    return SampleTable(split, buffer, offsets, np.concatenate(labels)), classes, record


def _check_not_empty(split: str, classes: List[str], counts: List[int]) -> None:
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise DataError(f"class folder '{Path(split) / empty[0]}' holds no images"
                        f"{f' (and {len(empty) - 1} more)' if len(empty) > 1 else ''}; add images or remove it")


# ----------------------------------------------------------------------------- the cache


def default_index_cache() -> Path:
    """``$CLASSIFY_INDEX_CACHE``, else ``$XDG_CACHE_HOME/classify/index`` (``~/.cache``)."""
    if os.environ.get("CLASSIFY_INDEX_CACHE"):
        return Path(os.environ["CLASSIFY_INDEX_CACHE"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "classify" / "index"


def index_path(split: os.PathLike, cache_dir: os.PathLike) -> Path:
    """The index file of ``split``: keyed by its absolute path (symlinks resolved)."""
    real = os.path.realpath(split)
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:20]
    tail = "-".join(Path(real).parts[-2:]).replace(os.sep, "_")
    return Path(cache_dir) / f"{tail}-{digest}.npz"


def _write_index(path: Path, table: SampleTable, classes: List[str], record: dict) -> None:
    header = dict(record, version=INDEX_VERSION, root=os.path.realpath(table.root), classes=classes)
    meta = np.frombuffer(json.dumps(header).encode(), np.uint8)
    write_atomic(lambda f: np.savez(f, meta=meta, buffer=table.buffer, offsets=table.offsets, labels=table.labels),
                 path)


class _Stale(Exception):
    """The index exists but does not describe the tree any more (or is unreadable)."""


def _read_index(path: Path, split: str) -> Tuple[SampleTable, List[str]]:
    """The cached table of ``split``; ``FileNotFoundError`` when there is none, ``_Stale`` with
    the reason when it is corrupt or out of date."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["meta"].tobytes())
            buffer, offsets, labels = z["buffer"], z["offsets"], z["labels"]
    except FileNotFoundError:
        raise
    except Exception as e:  # a truncated or foreign file: zipfile, numpy and json all raise their own
        raise _Stale(f"is not a readable index ({type(e).__name__})") from None
    try:
        _check_header(header, split, offsets, labels)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise _Stale(f"is not a readable index ({type(e).__name__})") from None
    return SampleTable(split, buffer, offsets, labels), list(header["classes"])


def _check_header(header: dict, split: str, offsets: np.ndarray, labels: np.ndarray) -> None:
    if header["version"] != INDEX_VERSION or header["root"] != os.path.realpath(split):
        raise _Stale("was written for another folder or version")
    counts = np.bincount(labels, minlength=len(header["classes"])).tolist()
    if counts != header["counts"] or len(offsets) != len(labels) + 1:
        raise _Stale("does not add up (counts differ from its labels)")
    try:
        if os.stat(split).st_mtime_ns != header["split_mtime"]:
            raise _Stale("is out of date: a class folder was added or removed")
        for rel, mtime in header["dirs"]:
            if os.stat(os.path.join(split, rel)).st_mtime_ns != mtime:
                raise _Stale(f"is out of date: '{rel}' changed")
    except FileNotFoundError as e:
        raise _Stale(f"is out of date: '{e.filename}' is gone") from None


def load_table(split: os.PathLike, cache_dir: Optional[os.PathLike], log: Log = None
               ) -> Tuple[SampleTable, List[str]]:
    """(table, classes) of ``split``: from ``cache_dir``'s index when valid, else scanned (and
    the index written). ``cache_dir`` None: scan, write nothing (``--no-index-cache``)."""
    import fcntl

    split = str(split)
    if cache_dir is None:
        return _scanned(split, log)[:2]
    path = index_path(split, cache_dir)
    with contextlib.suppress(FileNotFoundError, _Stale):
        return _read_index(path, split)  # the warm start: no lock (the index is replaced atomically)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a+b")
    except OSError as e:
        _say(log, f"=> index cache '{cache_dir}' is not usable ({e.strerror}); scanning '{split}' without it")
        return _scanned(split, log)[:2]
    with lock:  # closing it (or dying) drops the lock
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        return _cached_or_scanned(path, split, log)


def _scanned(split: str, log: Log) -> Tuple[SampleTable, List[str], dict]:
    """``scan_split``, its notices said."""
    table, classes, record = scan_split(split)
    for line in record["skipped"]:
        _say(log, line)
    return table, classes, record


def _say(log: Log, line: str) -> None:
    if log is not None:
        log(line)
    else:
        print(line, flush=True)


def _cached_or_scanned(path: Path, split: str, log: Log) -> Tuple[SampleTable, List[str]]:
    """Under the lock: the index another process wrote meanwhile, else a scan (written)."""
    try:
        return _read_index(path, split)
    except FileNotFoundError:
        reason = None
    except _Stale as e:
        reason = str(e)
    start = time.perf_counter()
    table, classes, record = _scanned(split, log)
    took = time.perf_counter() - start
    try:
        _write_index(path, table, classes, record)
    except OSError as e:
        _say(log, f"=> could not write the index {path} ({e.strerror}); '{split}' will be scanned again next time")
        return table, classes
    what = f"the index {path} {reason}; rebuilt it" if reason else f"indexed into {path}"
    _say(log, f"=> '{split}': {len(table)} images in {len(classes)} classes, scanned in {took:.1f} s; {what}")
    return table, classes
