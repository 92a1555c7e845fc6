"""ImageFolder trees: layout checks, hidden-file filtering and bad-image tolerance."""

import os
from pathlib import Path
from typing import List, Optional, Tuple

from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from .index import load_table

__all__ = ["resolve_splits", "SafeImageFolder", "check_same_classes", "IMAGE_ERRORS", "load_image"]


def resolve_splits(root: str) -> Tuple[Optional[Path], Optional[Path]]:
    """(train_dir, val_dir) for ``root`` holding train/ and val/, or a split folder itself.

    MindSpore style: ``--data_dir=.../train`` trains without validation and
    ``--data_dir=.../val`` evaluates only.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"data path '{root}' does not exist; pass the folder that holds train/ and val/")
    if not path.is_dir():
        raise DataError(f"data path '{root}' is not a folder; pass the folder that holds train/ and val/")
    train, val = path / "train", path / "val"
    if train.is_dir() and val.is_dir():
        return train, val
    if path.name == "train" and _has_class_dirs(path):
        return path, None
    if path.name in ("val", "validation") and _has_class_dirs(path):
        return None, path
    missing = " and ".join(p.name + "/" for p in (train, val) if not p.is_dir())
    raise DataError(f"data path '{root}' has no {missing}; expected an ImageFolder root with "
                    f"train/<class>/*.jpg and val/<class>/*.jpg")


def _has_class_dirs(path: Path) -> bool:
    return any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(path))


# What PIL raises for a corrupt, truncated or non-image file (UnidentifiedImageError and
# "image file is truncated" are OSErrors; some broken headers raise SyntaxError/ValueError).
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def load_image(source, transform):
    """Open ``source`` (a path or a file object) lazily and run ``transform`` on it (it
    decodes, see classify.transforms); None for an unreadable image."""
    try:
        with Image.open(source) as image:
            return transform(image) if transform is not None else image.convert("RGB")
    except IMAGE_ERRORS:
        return None


class SafeImageFolder(Dataset):
    """An ImageFolder split (``root/<class>/**/*.jpg``, hidden files and folders ignored) that
    yields ``None`` for unreadable images. Its samples are a flat ``SampleTable`` (no Python
    list of tuples), from the index cache ``index_cache`` when given (``classify.data.index``)."""

    def __init__(self, root: Path, transform=None, *, index_cache: Optional[os.PathLike] = None, log=None):
        self.root, self.transform = str(root), transform
        self.table, self.classes = load_table(root, index_cache, log)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int):
        path, target = self.table[index]
        return load_image(path, self.transform), target


def check_same_classes(train: List[str], val: List[str]) -> None:
    if train == val:
        return
    only_train = [c for c in train if c not in val][:3]
    only_val = [c for c in val if c not in train][:3]
    raise DataError(f"train/ and val/ have different classes (only in train: {only_train or '-'}, "
                    f"only in val: {only_val or '-'}); both splits need the same class folders")
