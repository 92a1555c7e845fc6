"""``--data-backend gpu``: workers read JPEG bytes, the device decodes and crops.

Workers do almost nothing: read the file, parse its header (size only, PIL, no decode)
and draw the random-resized-crop box and flip from the per-sample seed (the same
sampling as the PIL path, so a run is as reproducible and resumable). The main process
gets one flat uint8 byte tensor per batch, decodes it with one batched
``torchvision.io.decode_jpeg`` call on the device (nvJPEG on CUDA) and crops, resizes
and flips each image there. On a CPU device this is the very same code with
``decode_jpeg`` on the CPU (that is how it is tested here).

Unreadable files are dropped and counted like in the PIL path: a bad header in the
worker; a body that fails to decode makes the batched call fail, and the batch is then
decoded one image at a time (``decode_image``, which also reads a stray PNG).
"""

import io
from typing import List, Optional

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import functional as F

from ..transforms import RRC_RATIO, RRC_SCALE, sample_crop
from .folder import IMAGE_ERRORS

__all__ = ["JpegFiles", "jpeg_sample", "collate_jpeg", "DeviceDecode", "DeviceBatches"]

class JpegFiles(Dataset):
    """``(bytes, plan, target)`` per image of a sample table (``(path, label)`` per index, e.g.
    ``classify.data.index.SampleTable``); bytes None when unreadable. ``plan``:
    ``(top, left, height, width, flip)`` for training, None for val."""

    def __init__(self, samples, classes: List[str], train: bool, image_size: int, val_resize: int,
                 crop: tuple = (RRC_SCALE, RRC_RATIO)):
        self.table, self.classes, self.train = samples, classes, train
        self.image_size, self.val_resize, self.crop = image_size, val_resize, crop

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int):
        path, target = self.table[index]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None, None, target
        return jpeg_sample(data, target, self.train, self.crop)


def jpeg_sample(data: bytes, target: int, train: bool, crop: tuple = (RRC_SCALE, RRC_RATIO)):
    """``(bytes, crop plan, target)`` for the device decode; ``(None, None, target)`` when the
    header does not parse. The plan is drawn from torch's generator (the per-sample seed);
    ``crop``: RandomResizedCrop's (scale, ratio) ranges."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # parses the header only, no decode
            width, height = image.size
    except IMAGE_ERRORS:
        return None, None, target
    return data, sample_crop(width, height, *crop) if train else None, target


def collate_jpeg(batch):
    """One flat uint8 tensor for the batch's bytes (one shared-memory block, not one per
    image), their lengths, the crop plans, targets and the number of unreadable files."""
    good = [b for b in batch if b[0] is not None]
    data = b"".join(d for d, _, _ in good)
    flat = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    return (flat, [len(d) for d, _, _ in good], [p for _, p, _ in good],
            torch.tensor([t for _, _, t in good], dtype=torch.long), len(batch) - len(good))


class DeviceDecode:
    """A collated batch -> ``(uint8 N x 3 x S x S on the device, target, n_bad)``."""

    def __init__(self, device: torch.device, train: bool, image_size: int, val_resize: int):
        self.device, self.train = device, train
        self.image_size, self.val_resize = image_size, val_resize
        self._stream = None  # CUDA: the decode's own stream

    def __call__(self, batch):
        flat, lengths, plans, target, n_bad = batch
        if self.device.type != "cuda":
            out, bad = self._decode_and_crop(flat, lengths, plans)
        else:
            out, bad = self._on_side_stream(flat, lengths, plans)
        if out is None:
            return None, None, n_bad + len(bad)
        good = [i for i in range(len(lengths)) if i not in bad] if bad else slice(None)
        return out, target[good].to(self.device, non_blocking=True), n_bad + len(bad)

    def _on_side_stream(self, flat, lengths, plans):
        """CUDA: torchvision's decoder writes into its output from its own stream without
        waiting for the stream the memory was allocated on. On a private stream that has
        finished its previous batch, freed memory that kernels still queued on the training
        stream may read is never handed to the decoder (the allocator pools per stream)."""
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        self._stream.synchronize()
        with torch.cuda.stream(self._stream):
            out, bad = self._decode_and_crop(flat, lengths, plans)
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self._stream)
        if out is not None:
            out.record_stream(current)
        return out, bad

    def _decode_and_crop(self, flat, lengths, plans):
        """(uint8 batch or None, indices of the undecodable images)."""
        images = self._decode(list(torch.split(flat, lengths)))
        bad = [i for i, image in enumerate(images) if image is None]
        if len(bad) == len(images):
            return None, bad
        return torch.stack([self._transform(im, plans[i]) for i, im in enumerate(images) if im is not None]), bad

    def _decode(self, data: List[torch.Tensor]) -> List[Optional[torch.Tensor]]:
        if not data:
            return []
        try:  # host bytes in; device= says where to decode (nvJPEG on cuda)
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError:
            pass
        out = []
        for d in data:  # one at a time: find the bad ones; decode_image also reads PNG etc.
            try:
                image = decode_image(d, mode=ImageReadMode.RGB)
            except RuntimeError:
                out.append(None)
                continue
            if image.dtype != torch.uint8:  # e.g. a 16-bit PNG
                image = F.to_dtype(image, torch.uint8, scale=True)
            out.append(image.to(self.device))
        return out

    def _transform(self, image: torch.Tensor, plan) -> torch.Tensor:
        size = self.image_size
        if plan is None:  # val: Resize(shorter side) + CenterCrop, as the PIL path
            image = F.resize(image, [self.val_resize], antialias=True)
            return F.center_crop(image, [size, size])
        top, left, h, w, flip = plan
        image = F.resized_crop(image, top, left, h, w, [size, size], antialias=True)
        return image.flip(-1) if flip else image


class DeviceBatches:
    """A DataLoader whose batches are decoded on the device as they are taken; has the
    loader's length and sampler, so the training loop and resume treat it as the loader."""

    def __init__(self, loader, decode: DeviceDecode):
        self.loader, self.decode = loader, decode
        self.sampler = loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return (self.decode(batch) for batch in self.loader)
