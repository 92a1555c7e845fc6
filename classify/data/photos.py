"""Photo-like JPEGs for loader benchmarks (``tools/bench.py --data photos | --make-photos DIR``).

The demo set (``classify.data.demo``) is 72 px shapes: decoding it costs little, unlike an
ImageNet photo. These images have an ImageNet photo's pixel count (~500x375) and the order
of its entropy, so that a loader's decode cost is the one it meets in training. They carry
no class signal (``class_K`` is ``index % classes``): for timing only.

    ensure_photos(default_photos_root(300), 300)  # cached under ~/.cache/classify, made once
    make_photos(out, count=300, classes=10)       # OUT/train/class_K/photo_NNNN.jpg

Generated like the demo set, through its :func:`~classify.data.demo.publish_atomically`:
into a temporary sibling, then renamed into place (concurrent-safe; an interrupted run never
leaves a half-written set that a later run would trust). Deterministic: photo ``i`` is a pure
function of ``i``.
"""

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import UserError
from .demo import publish_atomically

__all__ = ["PHOTOS_VERSION", "default_photos_root", "render_photo", "make_photos", "ensure_photos"]

# Bump when the images change, so that an old cache is not mistaken for the new set.
PHOTOS_VERSION = 1

_SIZES = [(500, 375), (375, 500), (500, 333), (480, 360), (500, 400)]


def default_photos_root(count: int) -> Path:
    """``$XDG_CACHE_HOME/classify/bench-photos-v1-COUNT`` (``~/.cache`` without it)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "classify" / f"bench-photos-v{PHOTOS_VERSION}-{count}"


def render_photo(seed: int) -> Image.Image:
    """A ~500x375 photo-like image: multi-scale colour fields (a 1/f-ish spectrum, like natural
    images), a few soft-edged blobs, sensor-like noise. At JPEG quality 90 that is ~60 KB and
    ~1.4 ms of PIL decode here, the pixel count and the order of the entropy of an ImageNet photo
    (decode time follows the pixel count more than the file size)."""
    rng = np.random.default_rng(seed)
    w, h = _SIZES[rng.integers(0, len(_SIZES))]
    img = np.full((h, w, 3), rng.uniform(60, 190, 3), dtype=np.float32)
    for cells, amplitude in ((3, 70), (7, 45), (17, 30), (41, 30), (97, 40), (211, 40)):
        grid = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float32)
        img += (field / 255 - 0.5) * amplitude
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    overlay = canvas.copy()
    draw = ImageDraw.Draw(overlay)
    for _ in range(rng.integers(3, 9)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(15, w / 3), rng.uniform(15, h / 3)
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=tuple(rng.integers(0, 256, 3).tolist()))
    canvas = Image.blend(canvas, overlay.filter(ImageFilter.GaussianBlur(2)), 0.7)
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, rng.uniform(5, 11), (h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_photos(out, count: int = 300, classes: int = 10) -> Path:
    """Write ``count`` JPEGs (quality 90) as ``OUT/train/class_K/photo_NNNN.jpg``; deterministic."""
    for i in range(count):
        folder = Path(out) / "train" / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        render_photo(i).save(folder / f"photo_{i:04d}.jpg", quality=90)
    return Path(out)


def _count(root: Path) -> int:
    return len(list(root.glob("train/*/*.jpg")))


def ensure_photos(root, count: int) -> Path:
    """``root`` holding at least ``count`` photos, generated on first use (see the module
    docstring). A non-empty ``root`` with fewer is refused (one-line ``UserError``)."""
    root = Path(root)
    if _count(root) >= count:
        return root
    if root.exists() and not root.is_dir():
        raise UserError(f"'{root}' is a file; pass a new or empty folder to --make-photos")
    if root.is_dir() and any(root.iterdir()):
        raise UserError(f"'{root}' is not empty and holds fewer than {count} photos; pass a new or empty "
                        f"folder to --make-photos")
    publish_atomically(root, lambda tmp: make_photos(tmp, count), lambda r: _count(r) >= count)
    return root
