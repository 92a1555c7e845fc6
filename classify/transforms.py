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
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision.transforms import v2

__all__ = ["AUTO_AUGMENT", "RRC_SCALE", "RRC_RATIO", "AugmentSpec", "resize_batch", "train_transform",
           "val_transform", "Normalize", "batch_mix",
           "DraftRandomResizedCrop", "DraftRGB", "sample_crop", "pil_to_uint8"]

_DCT_SCALES = (8, 4, 2)  # what libjpeg can scale by while decoding
RRC_SCALE = (0.08, 1.0)  # RandomResizedCrop's defaults (torchvision, timm): --rrc-scale, --rrc-ratio
RRC_RATIO = (3 / 4, 4 / 3)


def _draft(image: Image.Image, reduce: float) -> Image.Image:
    """Ask the JPEG decoder for a version at most ``reduce`` times smaller (no-op for other
    formats and for already-loaded images); returns the RGB image, loaded. An RGB image is returned
    as it is (``convert("RGB")`` would copy it: 0.2 ms for a 500x375 photo, 8 % of its sample)."""
    factor = next((f for f in _DCT_SCALES if f <= reduce), 1)
    if factor > 1 and image.format == "JPEG" and getattr(image, "tile", None):  # not decoded yet
        # PIL picks the DCT scale as min(width // w, height // h): ask with floor division.
        image.draft("RGB", (max(1, image.width // factor), max(1, image.height // factor)))
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def sample_crop(width: int, height: int, scale: Sequence[float] = RRC_SCALE,
                ratio: Sequence[float] = RRC_RATIO) -> Tuple[int, int, int, int, bool]:
    """``(top, left, height, width, flip)``: RandomResizedCrop's box (the distribution of
    torchvision's ``get_params``: area uniform in ``scale``, aspect log-uniform in ``ratio``,
    10 tries, then the centre crop clamped to ``ratio``) and a fair coin for the flip.

    All randomness comes from one ``torch.rand(41)`` on the default generator (so a sample
    seed fixes it): ~10 us instead of ~100 us for ``get_params`` + a flip transform, which
    counts when an image is a 72 px JPEG that decodes in 200 us."""
    u = torch.rand(41).tolist()
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for i in range(0, 40, 4):
        target = area * (scale[0] + u[i] * (scale[1] - scale[0]))
        aspect = math.exp(log_lo + u[i + 1] * (log_hi - log_lo))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top, left = int(u[i + 2] * (height - h + 1)), int(u[i + 3] * (width - w + 1))
            return top, left, h, w, u[40] < 0.5
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w, u[40] < 0.5


class DraftRandomResizedCrop:
    """RandomResizedCrop + horizontal flip: PIL image (loaded or not) in, uint8 C x H x W out.

    Decodes the JPEG at the smallest DCT scale keeping at least ``size`` pixels across the
    crop, cuts the crop out, and resizes it as a uint8 tensor (antialiased bilinear, as
    PIL's): PyTorch's uint8 channels-last resize kernel is 2-3x faster than PIL's resize."""

    def __init__(self, size: int, hflip: bool = True, scale: Sequence[float] = RRC_SCALE,
                 ratio: Sequence[float] = RRC_RATIO):
        self.size, self.hflip, self.scale, self.ratio = size, hflip, tuple(scale), tuple(ratio)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        width, height = image.size
        top, left, h, w, flip = sample_crop(width, height, self.scale, self.ratio)
        image = _draft(image, min(w, h) / self.size)
        sx, sy = image.width / width, image.height / height
        x0, y0 = int(left * sx), int(top * sy)
        box = (x0, y0, max(x0 + 1, round((left + w) * sx)), max(y0 + 1, round((top + h) * sy)))
        crop = v2.functional.resize(pil_to_uint8(image.crop(box)), [self.size, self.size], antialias=True)
        return crop.flip(-1) if flip and self.hflip else crop

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, hflip={self.hflip}, scale={self.scale}, ratio={self.ratio})"


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 C x H x W (what ``v2.PILToTensor`` gives, without its dispatch)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


class DraftRGB:
    """Decode to RGB at the smallest DCT scale whose shorter side stays >= ``min_side``."""

    def __init__(self, min_side: int):
        self.min_side = min_side

    def __call__(self, image: Image.Image) -> Image.Image:
        return _draft(image, min(image.size) / self.min_side)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_side={self.min_side})"


AUTO_AUGMENT = ("ra", "ta_wide", "augmix", "imagenet")


@dataclass(frozen=True)
class AugmentSpec:
    """``--auto-augment``/``--random-erase``: torchvision references' policies, in the workers on
    the uint8 crop (their draws come from the per-sample seed, so runs stay resumable)."""

    auto_augment: Optional[str] = None  # one of AUTO_AUGMENT
    ra_magnitude: int = 9
    augmix_severity: int = 3
    random_erase: float = 0.0  # probability
    mean: Sequence[float] = (0.485, 0.456, 0.406)  # erased pixels: the mean, i.e. 0 once normalised

    def ops(self) -> list:
        bilinear = v2.InterpolationMode.BILINEAR  # torchvision references' --interpolation default
        policy = {"ra": lambda: v2.RandAugment(interpolation=bilinear, magnitude=self.ra_magnitude),
                  "ta_wide": lambda: v2.TrivialAugmentWide(interpolation=bilinear),
                  "augmix": lambda: v2.AugMix(interpolation=bilinear, severity=self.augmix_severity),
                  "imagenet": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=bilinear)}
        ops = [policy[self.auto_augment]()] if self.auto_augment else []
        if self.random_erase > 0:  # torchvision erases normalised images with 0: here the uint8 mean
            ops.append(v2.RandomErasing(self.random_erase, value=[round(255 * m) for m in self.mean]))
        return ops


def train_transform(image_size: int, color_jitter: float = 0.0, hflip: bool = True,
                    augment: Optional[AugmentSpec] = None, scale: Sequence[float] = RRC_SCALE,
                    ratio: Sequence[float] = RRC_RATIO) -> v2.Compose:
    ops = [DraftRandomResizedCrop(image_size, hflip, scale, ratio)]
    if color_jitter > 0:
        # MindSpore GoogLeNet seed: brightness/contrast/saturation jitter 0.4.
        ops.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    if augment is not None:
        ops += augment.ops()
    return v2.Compose(ops)


def val_transform(image_size: int, resize: int) -> v2.Compose:
    # Resize on the uint8 tensor (faster than PIL's, see DraftRandomResizedCrop).
    return v2.Compose([DraftRGB(resize), pil_to_uint8, v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)])


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


def batch_mix(*, mixup_alpha: float, cutmix_alpha: float, switch_prob: float = 0.5,
              num_classes: int) -> Optional[Callable]:
    """``--mixup-alpha``/``--cutmix-alpha``: torchvision v2 ``MixUp``/``CutMix`` on the normalised
    device batch, ``(images, labels) -> (mixed images, soft labels)``; with both, one of them
    per batch (CutMix with probability ``switch_prob``, timm's ``--mixup-switch-prob``). Their
    draws come from torch's CPU generator in the main process, which checkpoints restore: a
    resumed run mixes exactly as an uninterrupted one. None when both are off."""
    ops = [op(alpha=alpha, num_classes=num_classes)
           for op, alpha in ((v2.MixUp, mixup_alpha), (v2.CutMix, cutmix_alpha)) if alpha > 0]
    if not ops:
        return None
    if len(ops) == 1:
        return ops[0]
    return v2.RandomChoice(ops, p=[1.0 - switch_prob, switch_prob])


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """``--progressive-resize``: the normalised device batch at ``size`` x ``size`` (antialiased
    bilinear, as the crops are made); unchanged when it has that size already."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
