"""WebDataset shards: ``train-000000.tar ...`` with ``<key>.jpg`` + ``<key>.cls`` members and
the ``index.json`` that ``tools/make_shards.py`` writes (class names, samples per shard).

``--data`` names them as a folder holding ``index.json``, a brace pattern
(``/data/wds/train-{000000..000146}.tar``) or a ``pipe:`` URL
(``pipe:aws s3 cp s3://bucket/train-{000000..000146}.tar -``); ``index.json`` is read from
the same place (the shard's file name replaced by ``index.json``). The tar files are read
with the ``webdataset`` package (an optional dependency).

Deterministic assignment, so that every rank runs the same number of steps, a run resumes
exactly and evaluation counts every image once:

- train, epoch e: the shards are put in an order seeded by (``--seed``, e) and their
  samples read as one stream of N; rank r takes positions ``[r*P, (r+1)*P)`` of it (P =
  ceil(N / world size), wrapping around like ``DistributedSampler``'s padding), so a shard
  may be split between two ranks (each reads it, one skips the head). A rank's
  ``P // batch`` batches are split into contiguous runs, one per loader worker; each worker
  shuffles its run through a seeded buffer and augments each sample from its own seed.
  The DataLoader takes batches from the workers in turn, so step t is the (t // K)-th batch
  of worker t % K. A resume at step s skips, in each worker, the batches it already gave
  (read, not decoded), and rotates the workers so that the first one continues at step s:
  the rest of the epoch is the same batches in the same order, for the same world size and
  ``-j``.
- val: the shards in order; rank r takes ``[r*N // W, (r+1)*N // W)``, split over its
  workers; every image exactly once, no padding.

A member that does not decode counts as an unreadable image; a shard that is not a tar
file, is cut short, holds more samples than ``index.json`` says, holds a class label outside the
index's classes, or cannot be read is a one-line ``DataError`` naming it (and the member).

A shard is read from its file, or from the output of its ``pipe:`` command (``http(s)://``: of
curl) with a time limit (``--data-timeout``): a command that gives no byte for that long is a
one-line error naming the shard, and a command that fails names its exit status and the last
line it wrote to stderr. The command runs in its own process group, ended when the read ends.
"""

import io
import itertools
import json
import math
import os
import random
import re
import select
import shlex
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import DataError
from .device_decode import jpeg_sample
from .folder import load_image
from .samplers import seeded_call

__all__ = ["WEBDATASET_PIN", "is_shard_source", "ShardSplit", "open_shards", "ShardLoader", "require_webdataset",
           "PilDecode", "JpegDecode"]

WEBDATASET_PIN = "webdataset==1.0.2"
INDEX_NAME = "index.json"
SHUFFLE_BUFFER = 2000
DATA_TIMEOUT = 300.0  # --data-timeout: seconds a shard's command may give no byte


def require_webdataset():
    try:
        import webdataset
    except ImportError:
        raise DataError(f"reading WebDataset shards needs the webdataset package: pip install {WEBDATASET_PIN}") from None
    return webdataset


def is_shard_source(path: Optional[str]) -> bool:
    """``path`` names shards: a ``pipe:`` URL, a ``.tar`` pattern or file, a folder with index.json."""
    if not path:
        return False
    if path.startswith("pipe:") or re.search(r"\.tar($|\s|})", path):
        return True
    return os.path.isfile(os.path.join(os.path.expanduser(path), INDEX_NAME))


@dataclass(frozen=True)
class ShardSplit:
    """One split's shards (their URLs, samples in each) and how to turn members into samples."""

    urls: Tuple[str, ...]
    counts: Tuple[int, ...]
    classes: Tuple[str, ...]
    train: bool
    decode: Optional[Callable] = None  # (bytes, target) -> sample; set by build_datasets
    device_sizes: Optional[Tuple[int, int]] = None  # --data-backend gpu: (image size, val resize)
    timeout: float = DATA_TIMEOUT  # --data-timeout (0: wait forever)

    def __len__(self) -> int:
        return sum(self.counts)


def _locate(source: str) -> Tuple[Callable[[str], str], Optional[List[str]]]:
    """(shard name -> its URL, the shard names ``source`` picks or None for all)."""
    if not source.startswith("pipe:") and os.path.isdir(os.path.expanduser(source)):
        folder = os.path.expanduser(source)
        return (lambda name: os.path.join(folder, name)), None
    match = re.search(r"[^\s/]*\{[^}]*\}[^\s/]*|[^\s/]*\.tar\b", source)
    if match is None:
        raise DataError(f"'{source}' names no shards; pass a folder with {INDEX_NAME}, a pattern such as "
                        "/data/wds/train-{000000..000146}.tar, or a pipe: URL")
    from braceexpand import braceexpand  # webdataset's own dependency

    head, tail = source[:match.start()], source[match.end():]
    return (lambda name: f"{head}{name}{tail}"), list(braceexpand(match.group()))


def _read_index(url: str, timeout: float) -> dict:
    require_webdataset()
    try:
        source = _Source(url, timeout)
        try:
            index = json.loads(source.read_all())
        finally:
            source.close()
    except _ShardError as e:
        raise DataError(f"cannot read the shard index: {e}") from None
    except Exception as e:  # a missing file, not JSON
        raise DataError(f"cannot read the shard index '{url}' ({_reason(e)}); tools/make_shards.py "
                        f"writes {INDEX_NAME} beside the shards") from None
    problem = _index_problem(index)
    if problem:
        raise DataError(f"the shard index '{url}' is not valid ({problem}); tools/make_shards.py writes {INDEX_NAME} "
                        "beside the shards")
    return index


def _index_problem(index) -> Optional[str]:
    """What is wrong with an index read from data (None: nothing): the shape open_shards relies on."""
    if not isinstance(index, dict) or any(k not in index for k in ("classes", "train", "val")):
        return "it needs the keys classes, train and val"
    classes = index["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "classes must be a list of class names"
    for split in ("train", "val"):
        entries = index[split]
        if not isinstance(entries, list):
            return f"{split} must be a list of shards"
        for e in entries:
            if not (isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"]
                    and type(e.get("count")) is int and e["count"] >= 0):
                return f"each {split} shard needs a name and a count >= 0, got {json.dumps(e)[:80]}"
    return None


def open_shards(source: str, timeout: float = DATA_TIMEOUT
                ) -> Tuple[Optional[ShardSplit], Optional[ShardSplit], List[str]]:
    """(train, val, classes) of the shards ``source`` names (see the module docstring); a pattern
    of train shards trains on those and validates on the index's val shards, a pattern of val
    shards only evaluates. ``timeout``: --data-timeout."""
    where, picked = _locate(source)
    index = _read_index(where(INDEX_NAME), timeout)
    classes = tuple(index["classes"])
    splits = {}
    for split in ("train", "val"):
        entries = index[split]
        if picked is not None and any(e["name"] in picked for e in entries):
            known = {e["name"] for e in entries}
            missing = [n for n in picked if n not in known]
            if missing:
                raise DataError(f"shard '{missing[0]}' is not in {where(INDEX_NAME)}; pick shards it lists")
            entries = [e for e in entries if e["name"] in picked]
        splits[split] = ShardSplit(tuple(where(e["name"]) for e in entries), tuple(int(e["count"]) for e in entries),
                                   classes, split == "train", timeout=timeout) if entries else None
    if picked is not None and not any(n in {e["name"] for s in ("train", "val") for e in index[s]} for n in picked):
        raise DataError(f"none of the shards '{source}' names is in {where(INDEX_NAME)}")
    if picked is not None and not any(e["name"] in picked for e in index["train"]):
        splits["train"] = None  # val shards only: evaluate (as --data_dir=.../val)
    return splits["train"], splits["val"], list(classes)


class PilDecode:
    """A member's bytes -> ``(image or None, target)``, as ``SafeImageFolder`` reads a file."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, data: bytes, target: int):
        return load_image(io.BytesIO(data), self.transform), target


class JpegDecode:
    """A member's bytes -> ``(bytes, crop plan, target)``, as ``JpegFiles`` reads a file."""

    def __init__(self, train: bool, crop: Optional[tuple] = None):
        self.train, self.crop = train, crop

    def __call__(self, data: bytes, target: int):
        return jpeg_sample(data, target, self.train, *([self.crop] if self.crop else []))


# ----------------------------------------------------------------------------- assignment


def _pieces(counts: List[int], begin: int, length: int) -> List[Tuple[int, int, int]]:
    """(shard, first, stop) runs covering stream positions ``[begin, begin + length)`` of the
    shards' samples read one after the other (positions past the end wrap around)."""
    total, out = sum(counts), []
    starts = list(itertools.accumulate(counts, initial=0))
    pos, left = begin % total, length
    while left > 0:
        shard = next(i for i in range(len(counts)) if starts[i] <= pos < starts[i + 1])
        first = pos - starts[shard]
        take = min(counts[shard] - first, left)
        out.append((shard, first, first + take))
        pos, left = (pos + take) % total, left - take
    return out


@dataclass(frozen=True)
class _Plan:
    """What one loader worker reads: its runs of shards, how many batches it gives and skips."""

    pieces: Tuple[Tuple[int, int, int], ...]  # into ``order``
    order: Tuple[int, ...]  # shard indices
    batches: int
    skip: int
    seed: Optional[int]  # shuffle + augmentation; None for val


def _train_plans(counts, *, rank, world, batch, seed, epoch, workers, skip_steps) -> List[_Plan]:
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = [int(i) for i in torch.randperm(len(counts), generator=g)]
    ordered = [counts[i] for i in order]
    per_rank = math.ceil(sum(counts) / world)
    steps = steps_per_rank(sum(counts), world, batch)
    size = batch if per_rank >= batch else per_rank
    k = max(workers, 1)
    plans, begin = [], rank * per_rank
    for logical in range(k):
        n = len(range(logical, steps, k))
        done = len(range(logical, skip_steps, k))
        plans.append(_Plan(tuple(_pieces(ordered, begin, n * size)), tuple(order), n, done,
                           hash((seed, epoch, rank, logical)) % 2**62))
        begin += n * size
    rot = skip_steps % k  # the first worker continues at step skip_steps
    return plans[rot:] + plans[:rot]


def steps_per_rank(total: int, world: int, batch: int) -> int:
    per_rank = math.ceil(total / world)
    return max(per_rank // batch, 1)


def _val_plans(counts, *, rank, world, batch, workers) -> List[_Plan]:
    total = sum(counts)
    lo, hi = rank * total // world, (rank + 1) * total // world
    k = max(workers, 1)
    plans = []
    for w in range(k):
        a, b = lo + (hi - lo) * w // k, lo + (hi - lo) * (w + 1) // k
        plans.append(_Plan(tuple(_pieces(counts, a, b - a)) if b > a else (), tuple(range(len(counts))),
                           math.ceil((b - a) / batch), 0, None))
    return plans


# ----------------------------------------------------------------------------- reading


class _Failure:
    """A shard that could not be read, passed from a worker to the main process as a 'batch'."""

    def __init__(self, message: str):
        self.message = message


class _ShardError(Exception):
    """One line naming a shard. webdataset appends to the ``args`` of what passes through it; the
    message stays as written."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _reason(error: Exception) -> str:
    """``Type: message`` of an error, without what webdataset appended (`` @ <stream>``, the
    stream and url as further args): never a Python object's repr in a user's error line."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
    else:
        text = str(error.args[0]) if error.args else str(error)
    return f"{type(error).__name__}: {text.split(' @ ')[0]}"


# The URL schemes webdataset's gopen reads through a command, as the same commands (read here
# with --data-timeout); another scheme is left to gopen, a plain path is opened.
_CURL = "curl --connect-timeout 30 --retry 30 --retry-delay 2 -f -s -S -L {}"
_SCHEME_COMMANDS = {"http": _CURL, "https": _CURL, "sftp": _CURL, "ftps": _CURL, "scp": _CURL,
                    "gs": "gsutil cat {}", "ais": "ais get {} -"}


class _Source:
    """The bytes of one shard (or index): a file, or the output of a ``pipe:`` command (an
    ``http(s)://``, ``gs://``... URL: the command webdataset would run), read with a time limit.
    ``timeout`` seconds without a byte from the command is a ``_ShardError`` naming ``url``; so
    is its failing exit status. ``close`` ends the command (its process group) if it still runs."""

    def __init__(self, url: str, timeout: float):
        self.url, self.timeout, self.proc = url, timeout, None
        scheme = re.match(r"([a-z][a-z0-9+.-]*)://", url)
        if url.startswith("pipe:"):
            command = url[len("pipe:"):]
        elif scheme and scheme.group(1) in _SCHEME_COMMANDS:
            command = _SCHEME_COMMANDS[scheme.group(1)].format(shlex.quote(url))
        elif scheme:
            self.file = require_webdataset().gopen(url, "rb")  # a scheme of gopen's own (hf://, ...)
            return
        else:
            self.file = open(os.path.expanduser(url), "rb")
            return
        self.errors = tempfile.TemporaryFile()  # a file, not a pipe: nothing blocks on what it writes
        self.proc = subprocess.Popen(command, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.errors, start_new_session=True)
        self.file = self.proc.stdout

    def __str__(self) -> str:
        return self.url

    def read(self, size: int = -1) -> bytes:
        if self.proc is None:
            return self.file.read(size)
        fd = self.file.fileno()
        if self.timeout > 0 and not select.select([fd], [], [], self.timeout)[0]:
            raise _ShardError(f"shard '{self.url}' gave no data for {self.timeout:g} s (--data-timeout); its "
                              "command is stuck: check it, or raise --data-timeout for storage that slow")
        data = os.read(fd, size if size > 0 else 1 << 20)
        if not data:
            self._finished()
        return data

    def read_all(self) -> bytes:
        chunks = []
        while True:
            chunk = self.read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def _finished(self) -> None:
        """The command closed its output: a failing exit status is an error naming it."""
        try:
            status = self.proc.wait(timeout=self.timeout or None)
        except subprocess.TimeoutExpired:
            raise _ShardError(f"shard '{self.url}': its command closed its output but did not exit within "
                              f"{self.timeout:g} s (--data-timeout)") from None
        if status != 0:
            self.errors.seek(0)
            lines = [line.strip() for line in self.errors.read().decode(errors="replace").splitlines() if line.strip()]
            said = f": {lines[-1][:200]}" if lines else ""
            raise _ShardError(f"the command of shard '{self.url}' exited with status {status}{said}")

    def close(self) -> None:
        self.file.close()
        if self.proc is None:
            return
        if self.proc.poll() is None:  # stopped early (enough samples, an error, a signal): end it
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.errors.close()


def _members(url: str, first: int, stop: int, count: int, timeout: float = DATA_TIMEOUT) -> Iterator[dict]:
    """Samples ``first:stop`` of the shard at ``url`` (which holds ``count``), read with webdataset."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    require_webdataset()
    n, source = -1, None
    try:
        source = _Source(url, timeout)
        for n, sample in enumerate(group_by_keys(tar_file_expander([{"url": url, "stream": source}]))):
            if n >= stop:
                if stop == count:  # read past the index's last sample: the shard holds more
                    raise _ShardError(f"shard '{url}' holds more than the {count} samples {INDEX_NAME} says; "
                                      f"rebuild {INDEX_NAME} with tools/make_shards.py")
                break
            if n >= first:
                yield sample
    except _ShardError:
        raise
    except Exception as e:  # tarfile.ReadError, a missing file, ...: one line that names the shard
        raise _ShardError(f"cannot read shard '{url}' ({_reason(e)}); "
                          "check that it exists and is a complete tar file (tools/make_shards.py writes them)") from None
    finally:
        if source is not None:
            source.close()
    if n + 1 < stop:
        raise _ShardError(f"shard '{url}' holds {n + 1} samples, {INDEX_NAME} says {count}; it is truncated: "
                          "rebuild it with tools/make_shards.py")


def _target(sample: dict) -> Optional[int]:
    try:
        return int(sample["cls"])
    except (KeyError, ValueError):
        return None


class _ShardStream(IterableDataset):
    """Batches of one rank (``plans``: one per loader worker), collated by ``collate``."""

    def __init__(self, split: ShardSplit, plans: List[_Plan], *, batch: int, collate):
        self.split, self.plans, self.batch, self.collate = split, plans, batch, collate

    def __iter__(self):
        info = get_worker_info()
        plan = self.plans[info.id if info is not None else 0]
        try:
            yield from self._batches(plan)
        except _ShardError as e:
            yield _Failure(str(e))

    def _samples(self, plan: _Plan) -> Iterator[dict]:
        for shard, first, stop in plan.pieces:
            index = plan.order[shard]
            yield from _members(self.split.urls[index], first, stop, self.split.counts[index], self.split.timeout)

    def _batches(self, plan: _Plan):
        wds = require_webdataset()
        stream = self._samples(plan)
        if plan.seed is not None:
            stream = wds.filters.shuffle(SHUFFLE_BUFFER, SHUFFLE_BUFFER // 10, rng=random.Random(plan.seed))(stream)
        position = plan.skip * self.batch
        stream = itertools.islice(stream, position, None)  # resume: read, do not decode
        for _ in range(plan.skip, plan.batches):
            members = list(itertools.islice(stream, self.batch))
            if not members:
                return
            samples = []
            for m in members:
                samples.append(self._decode(m, plan, position))
                position += 1
            yield self.collate(samples)

    def _decode(self, member: dict, plan: _Plan, position: int):
        target, data = _target(member), member.get("jpg")
        if target is None or data is None:  # a broken member counts as an unreadable image
            return self.split.decode(b"", 0)
        if not 0 <= target < len(self.split.classes):  # a label read from data: checked, never trusted
            raise _ShardError(f"shard '{member.get('__url__')}' member '{member.get('__key__')}' has class {target}, "
                              f"outside the {len(self.split.classes)} classes of {INDEX_NAME} (0.."
                              f"{len(self.split.classes) - 1}); rebuild the shards with tools/make_shards.py")
        if plan.seed is None:
            return self.split.decode(data, target)
        return seeded_call((plan.seed * 1000003 + position) % 2**63, self.split.decode, data, target)


class ShardLoader:
    """The loader of one rank over a ``ShardSplit``; it is its own ``sampler`` (``set_epoch``,
    ``skip``), as ``classify.run`` drives a folder loader. Train: the same number of steps on
    every rank (``len``); val: every sample once across ranks."""

    def __init__(self, split: ShardSplit, *, batch_size: int, workers: int, rank: int, world_size: int,
                 seed: int, collate, pin_memory: bool = False):
        self.split, self.batch, self.workers = split, batch_size, workers
        self.rank, self.world, self.seed, self.collate = rank, world_size, seed, collate
        self.pin_memory, self.epoch, self.start = pin_memory, 0, 0
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start = epoch, 0

    def skip(self, n: int) -> None:
        """Skip the first ``n`` samples of this rank's epoch (whole batches: a resume)."""
        self.start = min(max(n, 0) // self.batch, self._steps())

    def _steps(self) -> int:
        return steps_per_rank(len(self.split), self.world, self.batch)

    def _plans(self) -> List[_Plan]:
        if self.split.train:
            return _train_plans(list(self.split.counts), rank=self.rank, world=self.world, batch=self.batch,
                                seed=self.seed, epoch=self.epoch, workers=self.workers, skip_steps=self.start)
        return _val_plans(list(self.split.counts), rank=self.rank, world=self.world, batch=self.batch,
                          workers=self.workers)

    def __len__(self) -> int:
        if self.split.train:
            return self._steps() - self.start
        return sum(p.batches for p in self._plans())

    def __iter__(self):
        stream = _ShardStream(self.split, self._plans(), batch=self.batch, collate=self.collate)
        loader = DataLoader(stream, batch_size=None, num_workers=self.workers, pin_memory=self.pin_memory,
                            prefetch_factor=4 if self.workers else None,
                            generator=torch.Generator().manual_seed(self.seed))
        for batch in itertools.islice(loader, len(self)):
            if isinstance(batch, _Failure):
                raise DataError(batch.message)
            yield batch
