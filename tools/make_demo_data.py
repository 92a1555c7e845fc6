"""Write the built-in demo data set (procedural shapes, ImageFolder layout) to a folder.

    python tools/make_demo_data.py OUT [--seed N] [--train-per-class N] [--val-per-class N]
"""

import argparse

from classify.data.demo import make_demo_data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("out", help="folder to write train/ and val/ into")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--train-per-class", type=int, default=None, help="images per class in train/")
    parser.add_argument("--val-per-class", type=int, default=None, help="images per class in val/")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels")
    args = parser.parse_args(argv)
    sizes = {k: v for k, v in vars(args).items() if k not in ("out", "seed") and v is not None}
    out = make_demo_data(args.out, seed=args.seed, **sizes)
    counts = {split: sum(1 for _ in (out / split).rglob("*.jpg")) for split in ("train", "val")}
    classes = len([d for d in (out / "train").iterdir() if d.is_dir()])
    print(f"demo data: {classes} classes, {counts['train']} train and {counts['val']} val "
          f"images in {out}")


if __name__ == "__main__":
    main()
