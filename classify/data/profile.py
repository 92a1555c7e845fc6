"""What a run's defaults fit to (``classify.resolve``): how many training images an
ImageFolder tree holds and how large they typically are, read cheaply and deterministically.

``profile_folder(root, need_images=N)`` counts the train split's images with the scan's rules
(``classify.data.index``), stopping once ``N`` are found (ImageNet: one class folder), and reads
the headers (``PIL.Image.open(...).size``, no decode) of up to ``SAMPLE`` files spread evenly
over up to ``SAMPLE_CLASSES`` classes, in sorted order: the same tree gives the same profile in
every process and on every resume. It is computed at start (a few hundred directory entries
and at most ``SAMPLE`` headers; well under a second on local disk), not cached.

CIFAR-10 batches are 32x32 with 50000 training images; shards, ``--dummy`` and the demo set
have no profile (the recipe's or the demo profile's sizes).
"""

import os
from dataclasses import dataclass
from statistics import median
from typing import List, Optional

from PIL import Image

from .folder import IMAGE_ERRORS, resolve_splits
from .index import _walk, class_names

__all__ = ["DataProfile", "profile_folder", "SAMPLE", "SAMPLE_CLASSES"]

SAMPLE = 200  # headers read at most
SAMPLE_CLASSES = 50  # class folders listed for the sample at most


@dataclass(frozen=True)
class DataProfile:
    train_images: Optional[int]  # exact when below the ``need_images`` asked for; None: no train split
    # (the sizes are then the val split's)
    complete: bool  # train_images is the whole split (else: at least that many)
    short_side: Optional[int]  # median of the sampled images' shorter sides; None: nothing readable
    sampled: int  # headers read


def _files(class_dir: str) -> List[str]:
    """The images of one class folder, in the index's order (paths relative to it)."""
    walked = []
    _walk(class_dir, "", walked, [])  # what the walk skips: the scan says so
    walked.sort(key=lambda w: w[0])
    return [os.path.join(class_dir, rel.lstrip("/"), name) for rel, names, _ in walked for name in names]


def _spread(n: int, k: int) -> List[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return [int((i + 0.5) * n / k) for i in range(k)]


def _short_side(path: str) -> Optional[int]:
    try:
        with Image.open(path) as image:  # the header only
            return min(image.size)
    except IMAGE_ERRORS:
        return None


def profile_folder(root: str, *, need_images: int) -> DataProfile:
    """The profile of ``root``'s training split (``root`` as ``--data`` takes it)."""
    from .cifar import find_cifar_root

    if find_cifar_root(root) is not None:
        return DataProfile(train_images=50000, complete=True, short_side=32, sampled=0)
    train, val = resolve_splits(root)
    split = train or val  # -e on a val folder: the sizes of the images it evaluates
    classes = class_names(str(split))
    picked = set(_spread(len(classes), SAMPLE_CLASSES))
    per_class = -(-SAMPLE // len(picked))
    count, sides, listed = 0, [], {}
    for i, name in enumerate(classes):
        if count >= need_images and i not in picked:
            continue
        files = _files(os.path.join(str(split), name))
        if count < need_images:
            count += len(files)
        if i in picked:
            listed[i] = files
    complete = count < need_images or len(listed) == len(classes)
    for i in sorted(listed):
        files = listed[i]
        for j in _spread(len(files), per_class):
            side = _short_side(files[j])
            if side is not None:
                sides.append(side)
    return DataProfile(train_images=count if train is not None else None, complete=complete,
                       short_side=int(median(sides)) if sides else None, sampled=len(sides))
