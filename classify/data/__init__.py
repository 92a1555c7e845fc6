"""Datasets and loaders: ImageFolder, CIFAR-10 batches, --dummy and the built-in demo set."""

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from ..errors import DataError
from ..transforms import RRC_RATIO, RRC_SCALE, AugmentSpec, train_transform, val_transform
from .cifar import Cifar10, find_cifar_root
from .device_decode import DeviceBatches, DeviceDecode, JpegFiles, collate_jpeg
from .dummy import DummyImages
from .folder import SafeImageFolder, check_same_classes, resolve_splits
from .preflight import DUMMY_CLASSES, DataCheck, check_data, check_splits, count_classes, identity_root
from .samplers import EvalSampler, RepeatedAugSampler, SeededDataset, TrainSampler
from .shards import DATA_TIMEOUT, JpegDecode, PilDecode, ShardLoader, ShardSplit, is_shard_source, open_shards

BACKENDS = ("pil", "gpu", "dummy")

__all__ = ["BACKENDS", "DataSpec", "Datasets", "build_datasets", "check_data_root", "build_loader", "collate_skip_bad",
           "TrainSampler", "EvalSampler", "data_root", "count_classes", "check_splits", "check_data", "DataCheck",
           "identity_root", "DUMMY_CLASSES"]


@dataclass(frozen=True)
class DataSpec:
    root: Optional[str]  # None with dummy=False: the caller resolved the demo set already
    image_size: int
    val_resize: int
    color_jitter: float = 0.0
    dummy: bool = False
    dummy_sizes: Tuple[int, int] = (1281167, 50000)  # pytorch/examples' FakeData sizes
    num_classes: int = DUMMY_CLASSES  # dummy only; real data counts its classes
    backend: str = "pil"  # pil: decode + augment in workers; gpu: workers read bytes, the device decodes
    index_cache: Optional[str] = None  # folder of the file indexes (classify.data.index); None: scan every time
    val_crop_size: int = 0  # the val centre crop (--val-crop-size); 0: image_size
    augment: Optional[AugmentSpec] = None  # --auto-augment / --random-erase (pil only)
    data_timeout: float = DATA_TIMEOUT  # --data-timeout: a shard read that gives no byte that long fails
    rrc_scale: Tuple[float, float] = RRC_SCALE  # RandomResizedCrop's area range (--rrc-scale)
    rrc_ratio: Tuple[float, float] = RRC_RATIO  # and aspect range (--rrc-ratio)

    @property
    def val_crop(self) -> int:
        return self.val_crop_size or self.image_size


@dataclass
class Datasets:
    train: Optional[Dataset]
    val: Optional[Dataset]
    classes: List[str]
    kind: str  # folder | cifar10 | dummy


def build_datasets(spec: DataSpec) -> Datasets:
    if spec.dummy:
        train_n, val_n = spec.dummy_sizes
        return Datasets(DummyImages(train_n, spec.num_classes, spec.image_size),
                        DummyImages(val_n, spec.num_classes, spec.val_crop),
                        [f"class_{i}" for i in range(spec.num_classes)], "dummy")
    if is_shard_source(spec.root):
        return _shard_datasets(spec)
    cifar = find_cifar_root(spec.root)
    gpu = spec.backend == "gpu"  # workers read bytes (JpegFiles), the device decodes
    if gpu:
        _check_jpeg_source(spec, cifar)
    train_tf = None if gpu else train_transform(spec.image_size, spec.color_jitter, augment=spec.augment,
                                                scale=spec.rrc_scale, ratio=spec.rrc_ratio)
    val_tf = None if gpu else val_transform(spec.val_crop, spec.val_resize)
    if cifar is not None:
        train, val = Cifar10(cifar, True, train_tf), Cifar10(cifar, False, val_tf)
        return Datasets(train, val, train.classes, "cifar10")
    train_dir, val_dir = resolve_splits(spec.root)
    train = SafeImageFolder(train_dir, train_tf, index_cache=spec.index_cache) if train_dir else None
    val = SafeImageFolder(val_dir, val_tf, index_cache=spec.index_cache) if val_dir else None
    if train is not None and val is not None:
        check_same_classes(train.classes, val.classes)
    classes = (train or val).classes
    if gpu:
        def as_jpeg(folder, is_train):
            return None if folder is None else JpegFiles(folder.table, classes, is_train,
                                                         spec.image_size if is_train else spec.val_crop,
                                                         spec.val_resize, (spec.rrc_scale, spec.rrc_ratio))

        train, val = as_jpeg(train, True), as_jpeg(val, False)
    return Datasets(train, val, classes, "folder")


def _shard_datasets(spec: DataSpec) -> Datasets:
    """WebDataset shards (``classify.data.shards``): members decoded as the files would be."""
    if spec.backend == "gpu" and spec.color_jitter > 0:
        _check_jpeg_source(spec, None)
    train, val, classes = open_shards(spec.root, spec.data_timeout)

    def decoder(is_train: bool):
        if spec.backend == "gpu":
            return JpegDecode(is_train, (spec.rrc_scale, spec.rrc_ratio))
        return PilDecode(train_transform(spec.image_size, spec.color_jitter, scale=spec.rrc_scale,
                                         ratio=spec.rrc_ratio) if is_train
                         else val_transform(spec.image_size, spec.val_resize))

    sizes = (spec.image_size, spec.val_resize) if spec.backend == "gpu" else None
    train = None if train is None else dataclasses.replace(train, decode=decoder(True), device_sizes=sizes)
    val = None if val is None else dataclasses.replace(val, decode=decoder(False), device_sizes=sizes)
    return Datasets(train, val, classes, "shards")


def _check_jpeg_source(spec: DataSpec, cifar) -> None:
    if cifar is not None:
        raise DataError("--data-backend gpu decodes JPEG files; CIFAR-10 batches are already pixels: "
                        "use --data-backend pil")
    if spec.color_jitter > 0:
        raise DataError("--data-backend gpu has no colour jitter (this recipe uses it): use --data-backend pil")
    if spec.augment is not None:
        raise DataError("--data-backend gpu cannot apply --auto-augment/--random-erase (PIL-path policies): "
                        "use --data-backend pil")


def data_root(kind: str, path: Optional[str]) -> Optional[str]:
    """The folder to read: the demo set's (generated on first use) for ``kind == "demo"``."""
    if kind == "demo":
        from .demo import ensure_demo_data

        return str(ensure_demo_data())
    return path


def check_data_root(root: str) -> None:
    """Raise ``DataError`` when ``root`` is not a usable data folder (launchers call this first)."""
    if is_shard_source(root):
        open_shards(root)
    elif find_cifar_root(root) is None:
        resolve_splits(root)


def collate_skip_bad(batch):
    """Drop samples whose image could not be decoded; return (images, targets, n_bad)."""
    good = [s for s in batch if s[0] is not None]
    n_bad = len(batch) - len(good)
    if not good:
        return None, None, n_bad
    images, targets = default_collate(good)
    return images, targets, n_bad


def build_loader(dataset: Dataset, *, batch_size: int, workers: int, train: bool, rank: int = 0,
                 world_size: int = 1, seed: int = 0, pin_memory: bool = False,
                 device: torch.device = torch.device("cpu"), repeats: int = 0):
    """A DataLoader over this rank's shard. Train: shuffled, seeded per sample, drop_last
    (``repeats`` >= 2: repeated augmentation, ``RepeatedAugSampler``).
    For ``JpegFiles`` (``--data-backend gpu``) the batches are decoded on ``device``."""
    if len(dataset) < world_size:
        raise DataError(f"the {'train' if train else 'val'} set has {len(dataset)} images, fewer than "
                        f"{world_size} processes; use fewer devices or more data")
    if isinstance(dataset, ShardSplit):
        return _shard_loader(dataset, batch_size=batch_size, workers=workers, rank=rank, world_size=world_size,
                             seed=seed, pin_memory=pin_memory, device=device)
    jpeg = dataset if isinstance(dataset, JpegFiles) else None
    if train:
        sampler = (TrainSampler(len(dataset), rank, world_size, seed) if repeats < 2 else  # --ra-sampler
                   RepeatedAugSampler(len(dataset), rank, world_size, seed, reps=repeats))
        dataset = SeededDataset(dataset)
    else:
        sampler = EvalSampler(len(dataset), rank, world_size)
    # Drop a ragged last training batch (fixed shapes), unless the shard is smaller than one batch.
    drop_last = train and len(sampler) >= batch_size
    # Its own generator: creating an iterator then draws no number from the global RNG, so the
    # training RNG stream (dropout) is the same whether an epoch starts fresh or mid-way on resume.
    # Augmentation randomness comes from the per-sample seeds (SeededDataset), not from workers.
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, generator=generator,
                        collate_fn=collate_skip_bad if jpeg is None else collate_jpeg, pin_memory=pin_memory,
                        drop_last=drop_last, persistent_workers=workers > 0,
                        prefetch_factor=4 if workers > 0 else None)
    if jpeg is None:
        return loader
    return DeviceBatches(loader, DeviceDecode(device, jpeg.train, jpeg.image_size, jpeg.val_resize))


def _shard_loader(split: ShardSplit, *, batch_size: int, workers: int, rank: int, world_size: int, seed: int,
                  pin_memory: bool, device: torch.device):
    """A ``ShardLoader``; with ``device_sizes`` (``--data-backend gpu``) its batches are decoded on ``device``."""
    if len(split) < world_size:
        raise DataError(f"the {'train' if split.train else 'val'} shards hold {len(split)} images, fewer than "
                        f"{world_size} processes; use fewer devices or more data")
    loader = ShardLoader(split, batch_size=batch_size, workers=workers, rank=rank, world_size=world_size, seed=seed,
                         collate=collate_skip_bad if split.device_sizes is None else collate_jpeg,
                         pin_memory=pin_memory)
    if split.device_sizes is None:
        return loader
    return DeviceBatches(loader, DeviceDecode(device, split.train, *split.device_sizes))
