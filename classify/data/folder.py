"""ImageFolder trees: layout checks, hidden-file filtering and bad-image tolerance."""

import os
from pathlib import Path
from typing import List, Optional, Tuple

from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import DataError

__all__ = ["resolve_splits", "SafeImageFolder", "check_same_classes", "IMAGE_ERRORS"]


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


def _visible_image(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


# What PIL raises for a corrupt, truncated or non-image file (UnidentifiedImageError and
# "image file is truncated" are OSErrors; some broken headers raise SyntaxError/ValueError).
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _load(path: str, transform):
    """Open ``path`` lazily and run ``transform`` on it (it decodes, see classify.transforms);
    None for an unreadable image."""
    try:
        with Image.open(path) as image:
            return transform(image) if transform is not None else image.convert("RGB")
    except IMAGE_ERRORS:
        return None


class SafeImageFolder(ImageFolder):
    """ImageFolder that ignores hidden folders/files and yields ``None`` for unreadable images."""

    def __init__(self, root: Path, transform=None):
        try:
            super().__init__(str(root), transform=transform, is_valid_file=_visible_image)
        except FileNotFoundError as e:
            raise DataError(_empty_message(root, e)) from None

    def find_classes(self, directory: str) -> Tuple[List[str], dict]:
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise DataError(f"no class folders in '{directory}'; expected {directory}/<class>/*.jpg")
        return classes, {c: i for i, c in enumerate(classes)}

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        return _load(path, self.transform), target


def _empty_message(root: Path, error: Exception) -> str:
    empty = [e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")
             and not any(_visible_image(f.name) for f in os.scandir(e.path) if f.is_file())]
    if empty:
        return (f"class folder '{root / empty[0]}' holds no images"
                f"{f' (and {len(empty) - 1} more)' if len(empty) > 1 else ''}; add images or remove it")
    return f"no images under '{root}': {error}"


def check_same_classes(train: List[str], val: List[str]) -> None:
    if train == val:
        return
    only_train = [c for c in train if c not in val][:3]
    only_val = [c for c in val if c not in train][:3]
    raise DataError(f"train/ and val/ have different classes (only in train: {only_train or '-'}, "
                    f"only in val: {only_val or '-'}); both splits need the same class folders")
