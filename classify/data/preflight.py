"""The data's pre-flight: what a run would read, checked from folder and file names only (a
second on ImageNet too), creating nothing. ``main.py --check`` calls it (``classify.check``);
the run makes the same checks as it builds its datasets (``classify.data``), and both take
the split checks, the class count and the identity's data root from here.

What stays the run's to find: what it reads file by file (an empty class folder, a corrupt image).
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..errors import DataError

__all__ = ["DataCheck", "check_data", "check_splits", "count_classes", "identity_root", "DUMMY_CLASSES"]

DUMMY_CLASSES = 1000  # --dummy's classes (pytorch/examples' FakeData), unless --num-classes


@dataclass(frozen=True)
class DataCheck:
    layout: str  # folder train+val | folder train only | folder val only | shards ... | cifar10 | demo | dummy
    path: str  # as --check shows it: absolute; "none" for dummy; the demo set's folder
    root: Optional[str]  # the data root of the run's identity (classify.identity)
    has_train: bool
    has_val: bool
    num_classes: int  # the classifier's width, as the run will count it


def identity_root(kind: str, root: Optional[str]) -> Optional[str]:
    """The data root a run's identity records: ``dummy`` for synthetic data, else the folder read."""
    return "dummy" if kind == "dummy" else root


def count_classes(flag: Optional[int], classes: List[str]) -> int:
    """The classifier's width: ``--num-classes`` (at least the data's classes), else the data's."""
    if flag is None:
        return len(classes)
    if flag < len(classes):
        raise DataError(f"--num-classes {flag} is less than the {len(classes)} classes in the data; "
                        f"drop the flag or pass --num-classes {len(classes)}")
    return flag


def check_splits(*, path: Optional[str], has_train: bool, has_val: bool, evaluate: bool) -> None:
    """The splits a run needs: a val split to evaluate (-e), a train split to train."""
    if evaluate and not has_val:
        raise DataError("-e/--evaluate needs a val/ split; pass the data root holding val/ (without --no-val)")
    if not evaluate and not has_train:
        raise DataError(f"'{path}' is a validation folder; training needs train/ (or pass -e to evaluate)")


def check_data(*, kind: str, path: Optional[str], num_classes: Optional[int], no_val: bool,
               evaluate: bool, data_timeout: Optional[float] = None) -> DataCheck:
    """The layout of the data a run with these settings reads (one-line ``DataError`` when it
    is not usable), its splits against the mode (``check_splits``), and its class count."""
    found = _layout(kind, path, num_classes, data_timeout)
    check_splits(path=path, has_train=found.has_train, has_val=found.has_val and not no_val, evaluate=evaluate)
    count_classes(num_classes, range(found.num_classes))  # --num-classes below the data's: the run's error
    return found if num_classes is None else DataCheck(**{**found.__dict__, "num_classes": num_classes})


def _layout(kind: str, path: Optional[str], num_classes: Optional[int], data_timeout: Optional[float]) -> DataCheck:
    if kind == "dummy":
        return DataCheck("dummy", "none", "dummy", True, True, num_classes or DUMMY_CLASSES)
    if kind == "demo":
        from .demo import CLASSES, default_demo_root, is_complete

        root = default_demo_root()
        ready = is_complete(root)
        if not ready:
            _demo_writable(root)
        return DataCheck("demo", f"{root.absolute()}{'' if ready else ' (generated on first use)'}", str(root),
                         True, True, len(CLASSES))
    from .shards import is_shard_source

    if is_shard_source(path):
        from .shards import open_shards

        train, val, classes = open_shards(path) if data_timeout is None else open_shards(path, data_timeout)
        split = "train+val" if train and val else ("train only" if train else "val only")
        return DataCheck(f"shards {split}", path, path, train is not None, val is not None, len(classes))
    from .cifar import NUM_CLASSES, find_cifar_root

    cifar = find_cifar_root(path)
    if cifar is not None:
        if not (cifar / "test_batch").is_file():
            raise DataError(f"'{cifar}' has no test_batch; extract the full cifar-10-python.tar.gz there")
        return DataCheck("cifar10", str(cifar.absolute()), path, True, True, NUM_CLASSES)
    from .folder import check_same_classes, resolve_splits
    from .index import class_names

    train, val = resolve_splits(path)
    classes = {split: class_names(str(split)) for split in (train, val) if split is not None}
    if train is not None and val is not None:
        check_same_classes(classes[train], classes[val])
    layout = "folder train+val" if train and val else ("folder train only" if train else "folder val only")
    return DataCheck(layout, str(Path(path).expanduser().absolute()), path, train is not None, val is not None,
                     len(classes[train or val]))


def _demo_writable(root: Path) -> None:
    """The demo set the run would generate: a folder it can create (``ensure_demo_data``'s
    errors, found without creating anything)."""
    from .demo import demo_unwritable

    if root.is_dir() and any(root.iterdir()):
        from .demo import ensure_demo_data

        ensure_demo_data(root)  # refuses a half-written folder at once, creating nothing
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(demo_unwritable(root, f"'{existing}' is a file"))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(demo_unwritable(root, f"no write access to '{existing}'"))
