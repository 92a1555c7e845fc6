"""Copy an image folder tree with every image whose longer side exceeds N re-encoded at N, as FFCV
stores ImageNet (JPEGs at most 256 px on the longer side, quality 90): the loaders then decode a
fraction of the pixels per image.

    python tools/resize_dataset.py /data/imagenet /data/imagenet-256 --max-side 256
    python tools/resize_dataset.py /data/imagenet /data/imagenet-256 --max-side 256 --quality 90 --workers 8

Same tree, same file names, same classes and labels; images already within N are copied byte for byte,
other files (labels, READMEs) copied as they are. JPEGs are re-encoded at ``--quality`` (90), other
formats in their own format. Each file is written to a hidden temp file beside it and renamed when
complete (atomic): an interrupted run leaves no half-written image, and running the same command again
continues it (finished files are kept). ``DST/resize.json`` (max side, quality, counts) is written
last; the trainer reads it and says so in one line when a run crops larger than the stored size.
"""

import io
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

from PIL import Image

from classify.atomic import write_bytes, write_json, write_text
from classify.cli import OneLineParser
from classify.data.stored import RESIZE_NAME
from classify.devices import cpu_count
from classify.errors import UserError

__all__ = ["reencode", "resize_dataset", "main"]

PLAN_NAME = ".resize_dataset.json"  # the settings of a run in progress: a second run continues only the same
TMP_SUFFIX = ".tmp"  # classify.atomic's temp files, ".<name>.<random>.tmp" beside their target
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def reencode(data: bytes, *, max_side: int, quality: int, fmt: Optional[str] = None) -> Optional[bytes]:
    """The image ``data`` with its longer side scaled down to ``max_side`` (aspect kept; JPEG draft
    decode, then a Lanczos resample), encoded as ``fmt`` (default: its own format; JPEG at ``quality``);
    None when it is already within ``max_side`` (keep the bytes) or is not an image PIL reads."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) <= max_side:
                return None
            fmt = fmt or image.format or "JPEG"
            scale = max_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image.draft("RGB", size)  # JPEG: decode at 1/2, 1/4 or 1/8 where that still covers the target
            image = image.convert("RGB") if image.mode not in ("RGB", "L") else image
            image = image.resize(size, Image.Resampling.LANCZOS)
            out = io.BytesIO()
            image.save(out, fmt, **({"quality": quality} if fmt.upper() in ("JPEG", "WEBP") else {}))
            return out.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _one(job: Tuple[str, str, int, int]) -> str:
    """Copy or re-encode one file; returns "resized", "copied" or "kept" (an earlier run wrote it)."""
    src, dst, max_side, quality = job
    target = Path(dst)
    if target.exists():
        return "kept"
    data = Path(src).read_bytes()
    smaller = reencode(data, max_side=max_side, quality=quality) if src.lower().endswith(IMAGE_SUFFIXES) else None
    write_bytes(data if smaller is None else smaller, target)
    return "copied" if smaller is None else "resized"


def _files(src: Path) -> List[Path]:
    """Every file under ``src`` (relative), hidden entries left out, in a fixed order."""
    out = []
    for folder, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(folder, n).relative_to(src) for n in sorted(names) if not n.startswith(".")]
    return out


def _check_plan(dst: Path, plan: dict) -> None:
    path = dst / PLAN_NAME
    done = dst / RESIZE_NAME
    if path.is_file() or done.is_file():
        old = json.loads((path if path.is_file() else done).read_text())
        if {k: old.get(k) for k in plan} != plan:
            raise UserError(f"'{dst}' holds a copy made with other settings or from another tree "
                            f"({', '.join(f'{k} {old.get(k)}' for k in plan)}); use the same command to continue, "
                            "or a new DST folder")
    write_text(json.dumps(plan), path)


def _remove_stale_temps(dst: Path) -> None:
    """Temp files a killed run left (never renamed: their images are written again)."""
    for folder, _, names in os.walk(dst):
        for name in names:
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                os.unlink(os.path.join(folder, name))


def resize_dataset(src: str, dst: str, *, max_side: int, quality: int = 90, workers: int = 0) -> dict:
    """Copy ``src`` to ``dst`` with images re-encoded at ``max_side``; returns ``resize.json``'s record."""
    source, target = Path(src).expanduser(), Path(dst).expanduser()
    if not source.is_dir():
        raise UserError(f"SRC '{src}' is not a folder; pass the image folder tree to copy")
    if max_side < 1 or not 1 <= quality <= 100:
        raise UserError(f"--max-side must be >= 1 and --quality in 1..100, got {max_side} and {quality}")
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise UserError(f"DST '{dst}' is inside SRC '{src}'; pass a folder outside it")
    target.mkdir(parents=True, exist_ok=True)
    plan = {"source": str(source.resolve()), "max_side": max_side, "quality": quality}
    _check_plan(target, plan)
    _remove_stale_temps(target)
    files = _files(source)
    for folder in sorted({f.parent for f in files}):
        (target / folder).mkdir(parents=True, exist_ok=True)
    jobs = [(str(source / f), str(target / f), max_side, quality) for f in files]
    from tools.make_shards import Progress  # (make_shards imports reencode from here)

    counts = {"resized": 0, "copied": 0, "kept": 0}
    progress = Progress(len(jobs), 0)
    workers = workers or cpu_count()
    with ProcessPoolExecutor(max(1, workers)) as pool:
        every, pending = max(1, len(jobs) // 200), 0  # the bar redrawn ~200 times, not once per file
        for i, outcome in enumerate(pool.map(_one, jobs, chunksize=16), 1):
            counts[outcome] += 1
            pending += 1
            if pending >= every or i == len(jobs):
                progress.add(pending, f"({counts['resized']} re-encoded)")
                pending = 0
    sys.stderr.write("\n")
    record = {**plan, "version": 1, "files": len(jobs), **counts}
    write_json(record, target / RESIZE_NAME, indent=1)
    (target / PLAN_NAME).unlink(missing_ok=True)
    return record


def main(argv=None) -> int:
    p = OneLineParser(prog="resize_dataset.py", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="image folder tree (e.g. with train/ and val/)")
    p.add_argument("dst", help="where the copy goes (created)")
    p.add_argument("--max-side", "--max_side", type=int, required=True, metavar="N",
                   help="longer side of the stored images (FFCV stores ImageNet at 256)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encoded images (90)")
    p.add_argument("--workers", "-j", type=int, default=0, help="processes (default: the CPUs)")
    args = p.parse_args(argv)
    try:
        record = resize_dataset(args.src, args.dst, max_side=args.max_side, quality=args.quality,
                                workers=args.workers)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"=> {args.dst}: {record['files']} files, {record['resized']} re-encoded at --max-side {args.max_side}, "
          f"{record['copied']} copied as they were, {record['kept']} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
