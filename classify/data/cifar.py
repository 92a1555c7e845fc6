"""CIFAR-10 from its python batches (``data_batch_1..5`` + ``test_batch``), no download."""

import pickle
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError

__all__ = ["find_cifar_root", "Cifar10", "NUM_CLASSES"]

NUM_CLASSES = 10


def find_cifar_root(root: str) -> Optional[Path]:
    """The folder holding ``data_batch_1`` (root itself or root/cifar-10-batches-py), or None."""
    for path in (Path(root), Path(root) / "cifar-10-batches-py"):
        if (path / "data_batch_1").is_file():
            return path
    return None


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"cannot read CIFAR-10 batch '{path}' ({e}); re-extract cifar-10-python.tar.gz") from None


class Cifar10(Dataset):
    def __init__(self, root: Path, train: bool, transform=None):
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        names = [n for n in names if (root / n).is_file()]
        if not names:
            raise DataError(f"'{root}' has no {'data_batch_*' if train else 'test_batch'}; "
                            "extract the full cifar-10-python.tar.gz there")
        batches = [_load(root / n) for n in names]
        self.data = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = [int(t) for b in batches for t in b["labels"]]
        meta = root / "batches.meta"
        self.classes = _load(meta)["label_names"] if meta.is_file() else [str(i) for i in range(NUM_CLASSES)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]
