"""Built-in demo data set: procedural shapes, generated on first use.

Every command of the suite must run on a fresh machine without ImageNet. When no
data path is given the trainer calls :func:`ensure_demo_data`, which returns a small
ImageFolder tree (``train/<class>/*.jpg`` and ``val/<class>/*.jpg``) cached under
``$CLASSIFY_DEMO_DIR`` or ``$XDG_CACHE_HOME/classify/demo-v2`` (default
``~/.cache/classify/demo-v2``), and applies :data:`DEMO_PROFILE`, the demo's own short
schedule.

The class of an image is the shape drawn in it (``circle``, ``star``, ...). Size,
position, tilt and colour of the shape, the background (base colour, smooth colour
field, pixel noise), clutter (thin lines, dots) and blur vary per image. Each class has
a hue that 85% of its shapes are near, the others get any colour: colour alone caps
accuracy at ~86%, beyond that a net must see the shape; the colour cue is what lets a
from-scratch net get well above chance within the short CPU demo schedule. Shapes are
large and kept near the centre so that the usual
``RandomResizedCrop(scale=(0.08, 1)) + RandomHorizontalFlip`` leaves the class
recognisable most of the time.

Images are a pure function of ``(seed, split, class, index)``: numpy's ``Generator``
seeded from that tuple plus PIL drawing, so the same seed gives byte-identical files
whatever the order or process they are written in.
"""

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..atomic import publish_tree

__all__ = [
    "CLASSES",
    "DEMO_PROFILE",
    "DEMO_VERSION",
    "default_demo_root",
    "demo_unwritable",
    "is_complete",
    "ensure_demo_data",
    "make_demo_data",
    "publish_atomically",
    "render_image",
]

# Bump when the images change, so that an old cache is not mistaken for the new set.
DEMO_VERSION = 2

# Sorted, so that ImageFolder's label i is CLASSES[i].
CLASSES = (
    "arrow", "circle", "crescent", "cross", "heart",
    "hexagon", "ring", "square", "star", "triangle",
)

# The demo's own short schedule, applied by the trainer when the user gives no data
# path and no overriding flag. Batch 32: AlexNet's step costs ~0.5 s on 2 CPU cores at
# 64 px (its 58M-parameter classifier dominates, whatever the image size), so a
# 2000-image epoch is 62 steps. As with -b, the recipe lr is scaled linearly to this
# batch (AlexNet 0.01 @ 128 -> 0.0025, GoogLeNet 0.1 @ 512 -> 0.00625): the unscaled
# GoogLeNet lr 0.1 at batch 32 reached 14% in 3 epochs, the scaled one 45-52%.
DEMO_PROFILE = {
    "image_size": 64,   # train crop / val centre crop; stored images are 72 px
    "val_resize": 72,   # val: Resize(72) + CenterCrop(64), the 256/224 ratio
    "epochs": 3,
    "batch_size": 32,
    "workers": 2,
}

_MARKER = "DEMO_COMPLETE.json"   # written last: a tree without it is never used
_SPLITS = {"train": 0, "val": 1}
_SUPERSAMPLE = 4                 # shapes drawn at 4x and downsampled: smooth edges
_STALE_TMP_S = 3600              # temp trees older than this were left by a dead process

# Difficulty. Shapes are big, contrasted and upright-ish (tilted up to _TILT degrees,
# like objects in photos) on a calm background: a randomly initialised AlexNet must be
# able to pick up the signal within a few hundred SGD steps. With full rotation, busy
# backgrounds and more clutter it stays at chance for the whole 3-epoch demo.
_RADIUS = (0.26, 0.40)   # of the image side
_SHIFT = 0.12            # max centre offset, of the image side
_TILT = 30
_BG_FIELD = 0.35         # strength of the smooth colour field on the background
_MIN_CONTRAST = 200      # min L1 distance (0..765) of shape colour to background base
# Each class has a hue, used for _HUE_CUE of its shapes (the rest get any colour). With
# 0.6, AlexNet (3 demo epochs) and GoogLeNet stayed at 20-27%; with 0.85 they reach
# 45-52% while colour alone still caps at ~86%: learnable in minutes, not solved by colour.
_HUE_CUE = 0.85
_HUE_JITTER = 0.05       # of the hue circle; neighbouring classes are 0.1 apart


def _regular_polygon(n, inner=None, start=-np.pi / 2):
    """Unit-radius polygon, first vertex up; with ``inner`` a star with 2n points."""
    if inner is None:
        angles = start + np.arange(n) * 2 * np.pi / n
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    angles = start + np.arange(2 * n) * np.pi / n
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
    "square": _regular_polygon(4, start=np.pi / 4) * 0.92,  # upright, not a diamond
    "hexagon": _regular_polygon(6, start=0),
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


def _shape_colour(rng, class_index):
    """RGB float32; with probability _HUE_CUE near the class's own hue, else any colour."""
    if rng.uniform() >= _HUE_CUE:
        return rng.integers(0, 256, 3).astype(np.float32)
    hue = (class_index / len(CLASSES) + rng.uniform(-_HUE_JITTER, _HUE_JITTER)) % 1.0
    hsv = np.array([[[hue * 255, rng.uniform(150, 255), rng.uniform(150, 255)]]], np.uint8)
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"), np.float32)[0, 0]


def _background(rng, size, shape_colour):
    """Base colour that stands out from the shape's, a faint smooth colour field and
    Gaussian pixel noise; float32 HxWx3."""
    for _ in range(20):
        base = rng.uniform(0, 255, 3)
        if np.abs(base - shape_colour).sum() > _MIN_CONTRAST:
            break
    else:
        base = 255 - shape_colour
    grid = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), np.float32)
    img = base + _BG_FIELD * (field - field.mean((0, 1)))
    return (img + rng.normal(0, rng.uniform(2, 8), img.shape)).astype(np.float32)


def _draw_clutter(rng, img):
    """Thin random lines and small dots, drawn in place on a PIL image."""
    size = img.size[0]
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(0, 4)):
        xy = rng.uniform(0, size, 4).tolist()
        colour = tuple(rng.integers(0, 256, 3).tolist())
        draw.line(xy, fill=colour, width=int(rng.integers(1, 3)))
    for _ in range(rng.integers(0, 4)):
        x, y = rng.uniform(0, size, 2).tolist()
        r = rng.uniform(1, 3)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.integers(0, 256, 3).tolist()))


def render_image(class_index, seed, size=72):
    """One demo image of class ``CLASSES[class_index]``; ``seed`` is any int or tuple."""
    rng = np.random.default_rng(seed)
    colour = _shape_colour(rng, class_index)
    bg = _background(rng, size, colour)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    _draw_clutter(rng, canvas)
    radius = size * rng.uniform(*_RADIUS)
    # Centre within the middle of the image: large random crops still contain it.
    cx, cy = size / 2 + rng.uniform(-_SHIFT, _SHIFT, 2) * size
    angle = np.deg2rad(rng.uniform(-_TILT, _TILT))  # around the upright pose
    mask = _draw_shape_mask(CLASSES[class_index], size, cx, cy, radius, angle)
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255
    shade = colour + rng.normal(0, 10, (size, size, 3)).astype(np.float32)  # textured fill
    img = np.asarray(canvas, dtype=np.float32) * (1 - alpha) + shade * alpha
    img = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.3:  # some blurred images: edges are not always crisp
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    return img


def make_demo_data(out_dir, *, seed=0, train_per_class=200, val_per_class=50, size=72,
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
    """``$CLASSIFY_DEMO_DIR``, else ``$XDG_CACHE_HOME/classify/demo-v2`` (``~/.cache``)."""
    if os.environ.get("CLASSIFY_DEMO_DIR"):
        return Path(os.environ["CLASSIFY_DEMO_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "classify" / f"demo-v{DEMO_VERSION}"


def is_complete(root):
    """``root`` holds a finished demo set (its marker file is written last)."""
    return (root / _MARKER).is_file()


def ensure_demo_data(root=None, **make_kwargs):
    """Return the demo root (with ``train/`` and ``val/``), generating it on first use.

    ``root`` defaults to :func:`default_demo_root`; ``make_kwargs`` go to
    :func:`make_demo_data` when the tree has to be generated (tests make tiny sets).

    Safe for concurrent callers (e.g. every rank of a distributed run), through
    :func:`publish_atomically`: the marker file is written last, inside the temporary tree,
    so a tree at ``root`` without it was never published by this code.
    """
    from ..errors import DataError

    root = Path(root).expanduser() if root is not None else default_demo_root()
    if is_complete(root):
        return root
    if root.is_dir() and any(root.iterdir()):
        # Never deleted here: CLASSIFY_DEMO_DIR may name a folder of the user's.
        raise DataError(f"demo data dir '{root}' exists but is not a complete demo set (no {_MARKER}: "
                        "half-copied, or another folder); delete it, or set CLASSIFY_DEMO_DIR to another folder")
    if root.exists() and not root.is_dir():
        raise DataError(f"demo data dir '{root}' is a file; set CLASSIFY_DEMO_DIR to a folder")

    def write(tmp):
        make_demo_data(tmp, **make_kwargs)
        (tmp / _MARKER).write_text(json.dumps({"version": DEMO_VERSION, "classes": CLASSES}))

    try:
        publish_atomically(root, write, is_complete)
    except OSError as e:
        raise DataError(demo_unwritable(root, e.strerror or str(e))) from None
    if not is_complete(root):
        raise DataError(f"demo data dir '{root}' is incomplete after generation; delete it and run again")
    return root


def demo_unwritable(root, reason):
    """The one line for a demo folder that cannot be made (a read-only $HOME or cache)."""
    return (f"cannot create the demo set in '{root}' ({reason}); set CLASSIFY_DEMO_DIR (or XDG_CACHE_HOME) "
            "to a writable folder, or pass --data_path DIR")


def publish_atomically(root, write, is_complete):
    """Generate a tree at ``root`` without ever leaving a half-written one there:
    ``classify.atomic.publish_tree`` (a temporary sibling ``.<name>.tmp-*`` renamed into place;
    the first finisher of concurrent callers wins, temp trees of a killed process are removed
    once ``_STALE_TMP_S`` old). Returns ``root`` as a ``Path``; the demo set and the bench's
    photo set (``classify.data.photos``) share this.
    """
    return publish_tree(root, write, is_complete, stale_s=_STALE_TMP_S)
