"""Convert an ImageFolder (train/ and val/) into WebDataset shards the trainer reads with --data OUT.

    python tools/make_shards.py /data/imagenet /data/imagenet-wds                 # 1 GB shards
    python tools/make_shards.py /data/imagenet /data/imagenet-wds --per-shard 5000 --workers 8

Writes ``train-000000.tar ...`` and ``val-000000.tar ...``, members ``<key>.jpg`` (the file's
bytes, not re-encoded) and ``<key>.cls`` (the class index), and ``index.json`` (class names,
samples per shard), last. The train images are shuffled once (``--seed``) before they are cut
into shards, so that every shard holds every class; val keeps the folder's order.

``--max-side N`` (``--quality Q``, 90) re-encodes every image whose longer side exceeds N at N, as FFCV
stores ImageNet (``--max-side 256 --quality 90``): the loaders decode a fraction of the pixels per image.
``index.json`` records ``max_side`` and ``quality``; a run cropping larger than N says so in one line.

Each shard is written to a temp file and renamed when complete, so a half-written shard
never looks complete. Run the same command again after an interruption: finished shards
are kept, the rest are written. Needs ``pip install webdataset`` (see README "Data at scale").
"""

import argparse
import json
import os
import random
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from classify.atomic import write_atomic, write_text
from classify.data.folder import resolve_splits
from classify.data.index import scan_split
from classify.data.shards import INDEX_NAME, require_webdataset
from classify.cli import OneLineParser
from classify.errors import UserError, os_error_text
from tools.resize_dataset import reencode

TAR_OVERHEAD = 2 * 1024  # two members' headers and padding per sample
PLAN_NAME = ".make_shards.json"


def parse_size(text: str) -> int:
    """'1GB', '500MB', '64k', '1GiB' or bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size such as 1GB or 500MB")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def plan_split(split: Path, *, shuffle_seed, shard_bytes, per_shard):
    """[(first, stop)] cut points over the split's samples (in the order they are written)."""
    table, classes, record = scan_split(split)
    for line in record["skipped"]:  # link loops, FIFOs: left out, said
        print(line, flush=True)
    order = list(range(len(table)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    cuts, first, size = [], 0, 0
    for i, sample in enumerate(order):
        if per_shard:
            full = i - first >= per_shard
        else:
            nbytes = os.path.getsize(table.path(sample)) + TAR_OVERHEAD
            full = i > first and size + nbytes > shard_bytes
            size = nbytes if full else size + nbytes
        if full:
            cuts.append((first, i))
            first = i
    cuts.append((first, len(order)))
    return table, classes, order, cuts


def write_shard(path: Path, table, samples, max_side: int = 0, quality: int = 90) -> None:
    """``samples`` [(key, index into table)] into the tar ``path``, atomically, with the mode the
    umask gives (a shared data set must be readable by its other users); ``max_side``: images with
    a longer side above it re-encoded as JPEG at that size (``tools/resize_dataset.py``)."""
    wds = require_webdataset()

    def write(f) -> None:
        writer = wds.TarWriter(f, mtime=0, encoder=False)
        for key, i in samples:
            with open(table.path(i), "rb") as image:
                data = image.read()
            if max_side:
                data = reencode(data, max_side=max_side, quality=quality, fmt="JPEG") or data
            writer.write({"__key__": key, "jpg": data, "cls": str(int(table.labels[i])).encode()})
        writer.close()

    write_atomic(write, path)


class Progress:
    def __init__(self, total: int, done: int):
        self.total, self.done, self.start = total, done, time.perf_counter()

    def add(self, n: int, name: str) -> None:
        self.done += n
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} images "
                         f"({rate:.0f}/s) {name}   ")
        sys.stderr.flush()


def check_plan(out: Path, plan: dict) -> None:
    """A second run in ``out`` continues the first only with the same settings and tree."""
    path = out / PLAN_NAME
    if path.is_file():
        if json.loads(path.read_text()) != plan:
            raise UserError(f"'{out}' holds shards made with other settings or from another tree; use the same "
                            "command to continue, or a new OUT folder")
        return
    path.write_text(json.dumps(plan))


def make_shards(root: str, out: str, *, shard_bytes: int, per_shard: int, workers: int, seed: int,
                max_side: int = 0, quality: int = 90) -> dict:
    require_webdataset()
    out_dir = Path(out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = resolve_splits(root)
    jobs, index, plan = [], {"version": 1}, {"root": os.path.realpath(root), "bytes": shard_bytes,
                                             "per_shard": per_shard, "seed": seed}
    if max_side:  # recorded for the trainer (classify.data.stored) and for a continued run's check
        if max_side < 1 or not 1 <= quality <= 100:
            raise UserError(f"--max-side must be >= 1 and --quality in 1..100, got {max_side} and {quality}")
        index.update(max_side=max_side, quality=quality)
        plan.update(max_side=max_side, quality=quality)
    for name, split in (("train", train), ("val", val)):
        index[name] = []
        if split is None:
            continue
        table, classes, order, cuts = plan_split(split, shuffle_seed=seed if name == "train" else None,
                                                 shard_bytes=shard_bytes, per_shard=per_shard)
        if index.get("classes", classes) != classes:
            raise UserError(f"train/ and val/ have different classes under '{root}'; both need the same folders")
        index["classes"] = classes
        plan[name] = [b - a for a, b in cuts]
        for n, (a, b) in enumerate(cuts):
            shard = f"{name}-{n:06d}.tar"
            index[name].append({"name": shard, "count": b - a})
            jobs.append((out_dir / shard, table, [(f"{name}{j:08d}", order[j]) for j in range(a, b)]))
    check_plan(out_dir, plan)
    todo = [j for j in jobs if not j[0].exists()]
    progress = Progress(sum(len(j[2]) for j in jobs), sum(len(j[2]) for j in jobs if j[0].exists()))
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        for job, _ in zip(todo, pool.map(lambda j: write_shard(*j, max_side=max_side, quality=quality), todo)):
            progress.add(len(job[2]), job[0].name)
    sys.stderr.write("\n")
    write_text(json.dumps(index, indent=1) + "\n", out_dir / INDEX_NAME)
    return index


def main(argv=None) -> int:
    p = OneLineParser(prog="make_shards.py", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="ImageFolder root with train/ and/or val/")
    p.add_argument("out", help="folder for the shards and index.json")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--shard-size", type=parse_size, default=parse_size("1GB"), help="bytes per shard (1GB)")
    size.add_argument("--per-shard", type=int, default=0, metavar="N", help="images per shard instead")
    p.add_argument("--workers", type=int, default=4, help="shards written at once (4)")
    p.add_argument("--seed", type=int, default=0, help="the train images' one-time shuffle (0)")
    p.add_argument("--max-side", "--max_side", type=int, default=0, metavar="N",
                   help="re-encode images whose longer side exceeds N at N (FFCV: 256; default: keep the bytes)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encoded images (90)")
    args = p.parse_args(argv)
    try:
        index = make_shards(args.root, args.out, shard_bytes=args.shard_size, per_shard=args.per_shard,
                            workers=args.workers, seed=args.seed, max_side=args.max_side, quality=args.quality)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # OUT is a file, read-only, the disk is full
        print(f"error: {os_error_text(e)}", file=sys.stderr)
        return 1
    print(f"=> {args.out}: {len(index['train'])} train / {len(index['val'])} val shards, "
          f"{sum(s['count'] for s in index['train'])} / {sum(s['count'] for s in index['val'])} images, "
          f"{len(index.get('classes', []))} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
