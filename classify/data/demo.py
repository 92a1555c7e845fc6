"""Built-in demo data set: procedural shapes, generated on first use.

Every command of the suite must run on a fresh machine without ImageNet. When no
data path is given the trainer calls :func:`ensure_demo_data`, which returns a small
ImageFolder tree (``train/<class>/*.jpg`` and ``val/<class>/*.jpg``) cached under
``$CLASSIFY_DEMO_DIR`` or ``$XDG_CACHE_HOME/classify/demo-v1`` (default
``~/.cache/classify/demo-v1``), and applies :data:`DEMO_PROFILE`, the demo's own short
schedule.

The class of an image is the shape drawn in it (``circle``, ``star``, ...). Colour,
size, position and rotation of the shape, the background (smooth colour field plus
pixel noise) and clutter (thin lines and dots) vary per image, so a network has to
learn shape, not colour. Shapes are large and kept near the centre so that the usual
``RandomResizedCrop(scale=(0.08, 1)) + RandomHorizontalFlip`` leaves the class
recognisable most of the time.

Images are a pure function of ``(seed, split, class, index)``: numpy's ``Generator``
seeded from that tuple plus PIL drawing, so the same seed gives byte-identical files
whatever the order or process they are written in.
"""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "CLASSES",
    "DEMO_PROFILE",
    "DEMO_VERSION",
    "default_demo_root",
    "ensure_demo_data",
    "make_demo_data",
    "render_image",
]

# Bump when the images change, so that an old cache is not mistaken for the new set.
DEMO_VERSION = 1

CLASSES = (
    "arrow", "circle", "cross", "crescent", "heart",
    "hexagon", "ring", "square", "star", "triangle",
)

# The demo's own short schedule, applied by the trainer when the user gives no data
# path and no overriding flag. Measured on a 2-core CPU with the AlexNet ModelZoo
# recipe's lr 0.01 (cosine, label smoothing 0.1): 3 epochs take about 2 minutes,
# first-time generation included, and reach roughly 60-70% val Acc@1 (chance 10%).
# Batch 64 suits every network here on a CPU; the recipes' lrs learn at it, so no
# per-arch lr override is needed.
DEMO_PROFILE = {
    "image_size": 64,   # train crop / val centre crop; stored images are 72 px
    "val_resize": 72,   # val: Resize(72) + CenterCrop(64), the 256/224 ratio
    "epochs": 3,
    "batch_size": 64,
    "workers": 2,
}

_MARKER = "DEMO_COMPLETE.json"   # written last: a tree without it is never used
_SPLITS = {"train": 0, "val": 1}
_SUPERSAMPLE = 4                 # shapes drawn at 4x and downsampled: smooth edges
_STALE_TMP_S = 3600              # temp trees older than this were left by a dead process


def _regular_polygon(n, inner=None):
    """Unit-radius polygon vertices; with ``inner`` a star with 2n points."""
    if inner is None:
        angles = np.arange(n) * 2 * np.pi / n
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    angles = np.arange(2 * n) * np.pi / n
    radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


def _heart():
    t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], 1)  # centre the bounding box vertically
    return pts / np.abs(pts).max()


_ARM = 0.36  # half-width of the cross's arms
_POLYGONS = {
    "triangle": _regular_polygon(3),
    "square": _regular_polygon(4) * 0.92,  # corners at 0.92: area close to the others
    "hexagon": _regular_polygon(6),
    "star": _regular_polygon(5, inner=0.45),
    "cross": np.array([
        (_ARM, -1), (_ARM, -_ARM), (1, -_ARM), (1, _ARM), (_ARM, _ARM), (_ARM, 1),
        (-_ARM, 1), (-_ARM, _ARM), (-1, _ARM), (-1, -_ARM), (-_ARM, -_ARM), (-_ARM, -1),
    ]),
    "arrow": np.array([
        (-1, -0.25), (0.15, -0.25), (0.15, -0.7), (1, 0),
        (0.15, 0.7), (0.15, 0.25), (-1, 0.25),
    ]),
    "heart": _heart(),
}


def _draw_shape_mask(name, size, cx, cy, radius, angle):
    """Anti-aliased 'L' mask (0..255) of one shape, ``size`` x ``size`` pixels."""
    s = _SUPERSAMPLE
    mask = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy, r = cx * s, cy * s, radius * s

    def disc(x, y, rad, fill):
        draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=fill)

    if name == "circle":
        disc(cx, cy, r, 255)
    elif name == "ring":
        disc(cx, cy, r, 255)
        disc(cx, cy, 0.55 * r, 0)
    elif name == "crescent":
        disc(cx, cy, r, 255)
        disc(cx + 0.5 * r * np.cos(angle), cy + 0.5 * r * np.sin(angle), 0.85 * r, 0)
    else:
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        pts = _POLYGONS[name] @ rot.T * r + (cx, cy)
        draw.polygon([tuple(p) for p in pts.tolist()], fill=255)
    return mask.resize((size, size), Image.LANCZOS)


def _background(rng, size):
    """Smooth random colour field plus Gaussian pixel noise, float32 HxWx3."""
    grid = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    field = Image.fromarray(grid).resize((size, size), Image.BICUBIC)
    img = np.asarray(field, dtype=np.float32)
    return img + rng.normal(0, rng.uniform(4, 14), img.shape).astype(np.float32)


def _shape_colour(rng, background):
    """A random colour that stands out from the background's mean colour."""
    mean = background.reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.integers(0, 256, 3).astype(np.float32)
        if np.abs(colour - mean).sum() > 150:
            return colour
    return 255 - mean


def _draw_clutter(rng, img):
    """Thin random lines and small dots, drawn in place on a PIL image."""
    size = img.size[0]
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 7)):
        xy = rng.uniform(0, size, 4).tolist()
        colour = tuple(rng.integers(0, 256, 3).tolist())
        draw.line(xy, fill=colour, width=int(rng.integers(1, 3)))
    for _ in range(rng.integers(0, 6)):
        x, y = rng.uniform(0, size, 2).tolist()
        r = rng.uniform(1, 3)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.integers(0, 256, 3).tolist()))


def render_image(class_index, seed, size=72):
    """One demo image of class ``CLASSES[class_index]``; ``seed`` is any int or tuple."""
    rng = np.random.default_rng(seed)
    bg = _background(rng, size)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    _draw_clutter(rng, canvas)
    radius = size * rng.uniform(0.22, 0.38)
    # Centre within the middle of the image: large random crops still contain it.
    cx, cy = size / 2 + rng.uniform(-0.14, 0.14, 2) * size
    angle = rng.uniform(0, 2 * np.pi)
    mask = _draw_shape_mask(CLASSES[class_index], size, cx, cy, radius, angle)
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255
    colour = _shape_colour(rng, bg)
    shade = colour + rng.normal(0, 10, (size, size, 3)).astype(np.float32)  # textured fill
    img = np.asarray(canvas, dtype=np.float32) * (1 - alpha) + shade * alpha
    img = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.3:  # some blurred images: edges are not always crisp
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    return img


def make_demo_data(out_dir, seed=0, train_per_class=260, val_per_class=50, size=72,
                   num_classes=len(CLASSES)):
    """Write the demo ImageFolder tree to ``out_dir`` and return it as a ``Path``.

    ``OUT/train/<class>/<class>_NNNN.jpg`` and ``OUT/val/...``; the same arguments
    give byte-identical files. ``num_classes`` takes the first classes of ``CLASSES``.
    """
    if not 2 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in 2..{len(CLASSES)}, got {num_classes}")
    out = Path(out_dir)
    counts = {"train": train_per_class, "val": val_per_class}
    for split, per_class in counts.items():
        for class_index, name in enumerate(CLASSES[:num_classes]):
            class_dir = out / split / name
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = render_image(class_index, (seed, _SPLITS[split], class_index, i), size)
                img.save(class_dir / f"{name}_{i:04d}.jpg", quality=90)
    return out


def default_demo_root():
    """``$CLASSIFY_DEMO_DIR``, else ``$XDG_CACHE_HOME/classify/demo-v1`` (``~/.cache``)."""
    if os.environ.get("CLASSIFY_DEMO_DIR"):
        return Path(os.environ["CLASSIFY_DEMO_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "classify" / f"demo-v{DEMO_VERSION}"


def _is_complete(root):
    return (root / _MARKER).is_file()


def _remove_stale_tmp(root):
    """Delete temp trees that a killed process left beside ``root``."""
    for tmp in root.parent.glob(f".{root.name}.tmp-*"):
        try:
            if time.time() - tmp.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:  # another process removed it first
            pass


def ensure_demo_data(root=None):
    """Return the demo root (with ``train/`` and ``val/``), generating it on first use.

    Safe for concurrent callers (e.g. every rank of a distributed run): each one that
    finds no complete tree writes its own into a temporary sibling directory, writes
    the marker file last and renames the directory into place. ``rename`` onto an
    existing non-empty directory fails, so the first finisher wins and the others
    delete their copy and use the winner's; a half-written tree is never at ``root``.
    """
    root = Path(root).expanduser() if root is not None else default_demo_root()
    if _is_complete(root):
        return root
    if root.is_dir() and any(root.iterdir()) and not _is_complete(root):
        raise RuntimeError(
            f"demo data dir {root} exists but is not a complete demo set "
            f"(no {_MARKER}); delete it or set CLASSIFY_DEMO_DIR to another path")
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        make_demo_data(tmp)
        (tmp / _MARKER).write_text(json.dumps({"version": DEMO_VERSION, "classes": CLASSES}))
        _publish(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op when the rename succeeded
    if not _is_complete(root):
        raise RuntimeError(f"demo data dir {root} is incomplete after generation")
    return root


def _publish(tmp, root):
    """Atomically move the finished ``tmp`` tree to ``root`` unless another won."""
    try:
        os.rmdir(root)  # an empty dir (e.g. made by the user) does not block us
    except OSError:
        pass
    try:
        os.rename(tmp, root)
    except OSError:
        if not _is_complete(root):  # lost to something that is not a demo tree
            raise
