"""Write the built-in demo data set (procedural shapes, ImageFolder layout) to a folder.

    python tools/make_demo_data.py OUT [--seed N] [--train-per-class N] [--val-per-class N]
"""

import sys

from classify.cli import OneLineParser
from classify.data.demo import make_demo_data
from classify.errors import os_error_text


def main(argv=None):
    parser = OneLineParser(prog="make_demo_data.py", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write train/ and val/ into")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--train-per-class", type=int, default=None, help="images per class in train/")
    parser.add_argument("--val-per-class", type=int, default=None, help="images per class in val/")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels")
    args = parser.parse_args(argv)
    sizes = {k: v for k, v in vars(args).items() if k not in ("out", "seed") and v is not None}
    small = [f"--{k.replace('_', '-')}" for k, v in sizes.items() if v < (8 if k == "size" else 1)]
    if small:
        print(f"error: {small[0]} must be at least {8 if small[0] == '--size' else 1}", file=sys.stderr)
        return 2
    try:
        out = make_demo_data(args.out, seed=args.seed, **sizes)
    except OSError as e:  # OUT is a file, read-only, the disk is full
        print(f"error: {os_error_text(e)}", file=sys.stderr)
        return 1
    counts = {split: sum(1 for _ in (out / split).rglob("*.jpg")) for split in ("train", "val")}
    classes = len([d for d in (out / "train").iterdir() if d.is_dir()])
    print(f"demo data: {classes} classes, {counts['train']} train and {counts['val']} val "
          f"images in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
