"""Train/val presets: PIL decode at a reduced size where the crop allows, then
torchvision transforms v2.

The presets take a PIL image that may still be *unloaded* (``PIL.Image.open``): the first
step picks the crop from the header's size, then lets the JPEG decoder scale by 1/2, 1/4
or 1/8 in the DCT (``Image.draft``) whenever the crop still has at least the output's
pixels, so a 500x375 photo cropped to 64 px is decoded at a quarter of its size or less.

Workers return uint8 CHW tensors; conversion to float and normalisation happen on the
device in the main process (``Normalize`` below), as timm's prefetcher and DALI do: a
quarter of the shared-memory traffic and less work per worker.
"""

import math
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from PIL import Image
from torchvision.transforms import RandomResizedCrop, v2

__all__ = ["train_transform", "val_transform", "Normalize", "DraftRandomResizedCrop", "DraftRGB"]

_DCT_SCALES = (8, 4, 2)  # what libjpeg can scale by while decoding


def _draft(image: Image.Image, reduce: float) -> Image.Image:
    """Ask the JPEG decoder for a version at most ``reduce`` times smaller (no-op for other
    formats and for already-loaded images); returns the RGB image, loaded."""
    factor = next((f for f in _DCT_SCALES if f <= reduce), 1)
    if factor > 1 and image.format == "JPEG" and getattr(image, "tile", None):  # not decoded yet
        image.draft("RGB", (math.ceil(image.width / factor), math.ceil(image.height / factor)))
    return image.convert("RGB")


class DraftRandomResizedCrop:
    """RandomResizedCrop (torchvision's parameters and sampling) that decodes the JPEG at
    the smallest DCT scale that keeps at least ``size`` pixels across the crop, then crops
    and resizes in one antialiased PIL ``resize(box=...)``. PIL image in, PIL RGB out."""

    def __init__(self, size: int, scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = size, scale, ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        top, left, h, w = RandomResizedCrop.get_params(image, list(self.scale), list(self.ratio))
        image = _draft(image, min(w, h) / self.size)
        sx, sy = image.width / width, image.height / height
        box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
        return image.resize((self.size, self.size), Image.BILINEAR, box=box)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class DraftRGB:
    """Decode to RGB at the smallest DCT scale whose shorter side stays >= ``min_side``."""

    def __init__(self, min_side: int):
        self.min_side = min_side

    def __call__(self, image: Image.Image) -> Image.Image:
        return _draft(image, min(image.size) / self.min_side)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_side={self.min_side})"


def train_transform(image_size: int, color_jitter: float = 0.0, hflip: bool = True) -> v2.Compose:
    ops = [DraftRandomResizedCrop(image_size)]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    if color_jitter > 0:
        # MindSpore GoogLeNet seed: brightness/contrast/saturation jitter 0.4.
        ops.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    ops.append(v2.PILToTensor())
    return v2.Compose(ops)


def val_transform(image_size: int, resize: int) -> v2.Compose:
    return v2.Compose([DraftRGB(resize), v2.Resize(resize, antialias=True), v2.CenterCrop(image_size),
                       v2.PILToTensor()])


class Normalize(nn.Module):
    """uint8 N x C x H x W on the device -> float, (x / 255 - mean) / std, optional channels_last."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels_last: bool = False):
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, -1, 1, 1)), persistent=False)
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, -1, 1, 1),
                             persistent=False)
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if images.dtype == torch.uint8:
            images = images.float()
            return images.mul_(self.scale).sub_(self.shift)
        return images  # already float (e.g. tensors prepared by the caller)
