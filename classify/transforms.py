"""torchvision transforms v2 presets.

Workers return uint8 CHW tensors; conversion to float and normalisation happen on the
device in the main process (``Normalize`` below), as timm's prefetcher and DALI do: a
quarter of the shared-memory traffic and less work per worker.
"""

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.transforms import v2

__all__ = ["train_transform", "val_transform", "Normalize"]


def train_transform(image_size: int, color_jitter: float = 0.0, hflip: bool = True) -> v2.Compose:
    ops = [v2.RandomResizedCrop(image_size, antialias=True)]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    if color_jitter > 0:
        # MindSpore GoogLeNet seed: brightness/contrast/saturation jitter 0.4.
        ops.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    ops.append(v2.PILToTensor())
    return v2.Compose(ops)


def val_transform(image_size: int, resize: int) -> v2.Compose:
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()])


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
