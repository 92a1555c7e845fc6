"""``tools/bench.py --time-to-accuracy`` and ``tools/bench.py --pre-resized N`` (issue #24).

Time to accuracy: for each network and data set, the seed recipe trains ``--seed-epochs`` epochs and
its final Acc@1 is the target; the network's ``<net>_fast`` recipe then trains ``--fast-epochs``
epochs, and the table gives, for both, the epochs and the training time (the sum of the epochs'
train times, evaluation left out: both evaluate every epoch) until an evaluation first reached the
target. Every run is the trainer itself (``main.py`` in a subprocess, its ``metrics.jsonl`` read back),
with the same batch, image size and loader workers for both recipes::

    python tools/bench.py --time-to-accuracy                                   # demo + digits, AlexNet + GoogLeNet
    python tools/bench.py --time-to-accuracy --arch googlenet --data demo --fast-epochs 3
    python tools/bench.py --time-to-accuracy --data /data/imagenet --image-size 224 -b 256 \\
        --seed-epochs 90 --fast-epochs 32 --device cuda                           # ImageNet, on a GPU

Data: ``demo`` (the built-in shapes), ``digits`` (the UCI optical digits, 1797 real 8x8 scans as
scikit-learn ships them, rendered once as 64 px JPEGs into ``--digits-dir``, a seeded 80/20 split;
from ``sklearn.datasets`` when it is installed, else from ``--digits-csv``: its ``digits.csv.gz``),
or an ImageFolder root.

Pre-resized data: loader images/s per CPU core (and per second) on ~500x375 photo-like JPEGs
(``classify.data.photos``) as they are and after ``tools/resize_dataset.py --max-side N``, for the
``pil`` and ``gpu`` backends; then end to end (``train_one_epoch`` fed by the ``pil`` loader) for
AlexNet and GoogLeNet on both copies::

    python tools/bench.py --pre-resized 256                  # 224 px crops, batch 16
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from tools.parity import digit_scans, run_trainer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARCHS = ("alexnet", "googlenet")  # the nets whose runs fit a 2-core CPU in minutes
TTA_COLUMNS = [("arch", "arch", "{}"), ("data", "data", "{}"), ("recipe", "recipe", "{}"),
               ("epochs", "epochs", "{}"), ("final Acc@1", "final_acc1", "{:.2f}"),
               ("target", "target", "{:.2f}"), ("epochs to target", "epochs_to_target", "{}"),
               ("train s to target", "time_to_target_s", "{:.1f}"), ("train s total", "train_s", "{:.1f}"),
               ("speed-up", "speedup", "{:.2f}x")]
RESIZE_COLUMNS = [("loader", "loader", "{}"), ("stored", "stored", "{}"), ("px", "image_size", "{}"),
                  ("workers", "workers", "{}"), ("img/s", "img_s", "{:.1f}"), ("img/CPU-s", "img_per_cpu_s", "{:.1f}"),
                  ("x raw per CPU-s", "vs_raw_per_cpu_s", "{:.2f}x")]
E2E_COLUMNS = [("arch", "arch", "{}"), ("stored", "stored", "{}"), ("px", "image_size", "{}"),
               ("img/s", "img_s", "{:.1f}"), ("compute-only img/s", "compute_img_s", "{:.1f}"),
               ("% of compute", "pct_of_compute", "{:.1f}")]


# ----------------------------------------------------------------------------- data


def make_digits(out: Path, csv: Optional[str], *, size: int = 64, seed: int = 0) -> Path:
    """``out/{train,val}/<digit>/NNNN.jpg``: each 8x8 scan upscaled (bicubic) to ``size``, grey as RGB;
    a seeded 80/20 split. Written once (a marker file last)."""
    marker = out / "DIGITS_COMPLETE"
    if marker.is_file():
        return out
    images, labels = digit_scans(csv)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_val = len(labels) // 5
    for rank, i in enumerate(order):
        split = "val" if rank < n_val else "train"
        folder = out / split / str(int(labels[i]))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (np.asarray(images[i], dtype=np.float64) * 255).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
        image.save(folder / f"{int(i):04d}.jpg", quality=95)
    marker.write_text(json.dumps({"images": int(len(labels)), "val": int(n_val), "size": size, "seed": seed}))
    return out


def resolve_tta_data(name: str, args) -> Optional[str]:
    """None for the demo set (main.py's default), else a folder path."""
    if name == "demo":
        return None
    if name == "digits":
        return str(make_digits(Path(args.digits_dir).expanduser(), args.digits_csv))
    return name


# ----------------------------------------------------------------------------- time to accuracy


def train_run(*, arch: str, recipe: str, data: Optional[str], epochs: int, args, out: Path) -> List[Dict]:
    """One training run of the trainer (``tools.parity.run_trainer``); its metrics.jsonl records."""
    try:
        records, _ = run_trainer([*([data] if data else []), "-a", arch, "--recipe", recipe, "--epochs", epochs,
                                  "-b", args.batch_size, "--image-size", args.image_size, "-j", args.workers,
                                  "--seed", args.seed, "--device", args.device, "--print-freq", "100000", "--fresh"],
                                 out, trainer=args.trainer)
    except RuntimeError as e:
        raise RuntimeError(f"{arch} {recipe}: {e}") from None
    return records


def to_target(records: List[Dict], target: float):
    """(epochs, train seconds) until an evaluation (the weights' or their EMA's) first reached ``target``."""
    spent = 0.0
    for r in records:
        spent += r["epoch_time_s"]
        best = max(r.get("acc1") or 0.0, r.get("ema_acc1") or 0.0)
        if best >= target - 1e-9:
            return r["epoch"] + 1, spent
    return None, None


def bench_time_to_accuracy(args, progress) -> List[Dict]:
    """Seed vs fast recipe per net and data set; the runs' folders are removed at the end."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tta-") as tmp:
        work = Path(tmp)
        for data_name in args.data:
            data = resolve_tta_data(data_name, args)
            for arch in args.arch:
                runs = {}
                for kind, recipe, epochs in (("seed", _seed_recipe(arch), args.seed_epochs),
                                             ("fast", f"{arch}_fast", args.fast_epochs)):
                    start = time.perf_counter()
                    records = train_run(arch=arch, recipe=recipe, data=data, epochs=epochs, args=args,
                                        out=work / f"{data_name.replace('/', '_')}-{arch}-{kind}")
                    final = max(records[-1].get("acc1") or 0.0, records[-1].get("ema_acc1") or 0.0)
                    runs[kind] = (recipe, epochs, records, final)
                    progress(f"{arch} on {data_name}: {recipe} {epochs} epochs, final Acc@1 {final:.2f}, "
                             f"train {sum(r['epoch_time_s'] for r in records):.1f} s "
                             f"(wall {time.perf_counter() - start:.0f} s)")
                target = runs["seed"][3]
                seed_time = to_target(runs["seed"][2], target)[1]
                for kind in ("seed", "fast"):
                    recipe, epochs, records, final = runs[kind]
                    n, spent = to_target(records, target)
                    rows.append({"arch": arch, "data": data_name, "recipe": recipe, "epochs": epochs,
                                 "final_acc1": round(final, 2), "target": round(target, 2), "epochs_to_target": n,
                                 "time_to_target_s": None if spent is None else round(spent, 1),
                                 "train_s": round(sum(r["epoch_time_s"] for r in records), 1),
                                 "speedup": round(seed_time / spent, 2) if spent and seed_time else None})
    return rows


def _seed_recipe(arch: str) -> str:
    import models

    return models.default_recipe(arch)


# ----------------------------------------------------------------------------- pre-resized loaders


def bench_pre_resized(args, progress) -> Dict[str, List[Dict]]:
    from classify.data.photos import default_photos_root, ensure_photos
    from classify.devices import resolve_device
    from tools import bench
    from tools.resize_dataset import resize_dataset

    device = resolve_device(args.device)
    s = bench.Settings(device, args.batch_size, args.steps, args.warmup, args.repeat, 1000, False, None, None)
    raw = ensure_photos(default_photos_root(args.num_photos), args.num_photos)
    small = Path(args.resized_dir or f"{raw}-max{args.pre_resized}").expanduser()
    progress(f"pre-resizing {raw} -> {small} (--max-side {args.pre_resized})")
    resize_dataset(str(raw), str(small), max_side=args.pre_resized, quality=90, workers=args.workers or 0)
    folders = {"raw": raw / "train", f"max {args.pre_resized}": small / "train"}
    net = bench.Net.make(args.arch[0], args.image_size)
    loader_rows, e2e_rows = [], []
    for stored, folder in folders.items():
        for row in bench.bench_loaders(folder, net, s, args.loader, args.workers, progress):
            loader_rows.append({**row, "stored": stored})
    raw_cpu = {r["loader"]: r["img_per_cpu_s"] for r in loader_rows if r["stored"] == "raw"}
    for r in loader_rows:
        base = raw_cpu.get(r["loader"])
        r["vs_raw_per_cpu_s"] = round(r["img_per_cpu_s"] / base, 2) if base and r["img_per_cpu_s"] else None
    for arch in ([] if args.loader_only else args.arch):
        net = bench.Net.make(arch, args.image_size)
        parts = bench.make_parts(net, s)
        for stored, folder in folders.items():
            backend = bench.make_backend("pil", folder, net, s, args.workers)
            for row in bench.bench_end_to_end(parts, [backend], net, s, progress):
                e2e_rows.append({**row, "stored": stored})
        del parts
    return {"loader": loader_rows, "end_to_end": e2e_rows}


# ----------------------------------------------------------------------------- CLI


def get_args_parser() -> argparse.ArgumentParser:
    from classify.cli import OneLineParser
    from tools.bench import _csv

    p = OneLineParser(prog="bench.py", description="time to accuracy / pre-resized loaders (tools/bench_fast.py)")
    add = p.add_argument
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--time-to-accuracy", action="store_true", help="seed vs fast recipe: time to the seed's Acc@1")
    mode.add_argument("--pre-resized", type=int, default=None, metavar="N",
                      help="loaders per core on ~500x375 photos as they are vs re-encoded at --max-side N")
    add("--arch", "-a", type=_csv(), default=list(DEFAULT_ARCHS), help="comma list (default alexnet,googlenet)")
    add("--data", type=_csv(), default=["demo", "digits"], help="comma list of demo | digits | a folder")
    add("--digits-csv", default=None, metavar="PATH", help="scikit-learn's digits.csv.gz (without scikit-learn)")
    add("--digits-dir", default=os.path.join(tempfile.gettempdir(), "classify-digits-64"),
        help="where the digits are rendered (once)")
    add("--seed-epochs", type=int, default=8, help="the seed recipe's epochs (8)")
    add("--fast-epochs", type=int, default=4, help="the fast recipe's epoch budget (4: half the seed's)")
    add("-b", "--batch-size", dest="batch_size", type=int, default=None, help="32 (time to accuracy), 16 (loaders)")
    add("--image-size", type=int, default=None, help="64 (time to accuracy: the demo's), 224 (loaders)")
    add("-j", "--workers", type=int, default=2, help="loader workers (2)")
    add("--seed", type=int, default=0, help="the runs' --seed (0)")
    add("--device", default="cpu", help="the runs' --device (cpu)")
    add("--steps", type=int, default=40,
        help="loaders: batches per pass (40: the CPU time is read in 10 ms ticks; the photos repeat as needed)")
    add("--warmup", type=int, default=2, help="loaders: batches before timing (2)")
    add("--repeat", type=int, default=2, help="loaders: timed passes (2)")
    add("--num-photos", type=int, default=300, help="loaders: generated photos (300)")
    add("--resized-dir", default=None, metavar="DIR",
        help="where the pre-resized copy goes (default: beside the photos)")
    add("--loader", type=_csv(("pil", "gpu")), default=["pil", "gpu"])
    add("--loader-only", action="store_true", help="--pre-resized: skip the end-to-end runs")
    add("--json-out", default=None, metavar="FILE")
    add("--trainer", default=str(ROOT / "main.py"), metavar="SCRIPT", help="the training entry point (main.py)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from tools.bench import environment, render_table

    args = get_args_parser().parse_args(argv)
    tta = args.time_to_accuracy
    args.batch_size = args.batch_size or (32 if tta else 16)
    args.image_size = args.image_size or (64 if tta else 224)
    progress = lambda text: print(f"  {text}", file=sys.stderr, flush=True)  # noqa: E731
    import torch

    env = environment(torch.device(args.device if args.device != "auto" else "cpu"))
    print(f"bench: {env['device_name']}, {env['cpus']} CPUs, torch {env['torch']}, batch {args.batch_size}, "
          f"{args.image_size} px, {args.workers} loader workers, {time.strftime('%Y-%m-%d')}")
    if tta:
        progress(f"time to accuracy: {','.join(args.arch)} on {','.join(args.data)}; seed recipes {args.seed_epochs} "
                 f"epochs, fast recipes {args.fast_epochs}")
        report = {"time_to_accuracy": bench_time_to_accuracy(args, progress)}
        print("\ntime to the seed recipe's final Acc@1 (train time: the epochs' training, evaluation left out)")
        print(render_table(TTA_COLUMNS, report["time_to_accuracy"]))
    else:
        report = bench_pre_resized(args, progress)
        print(f"\nloader only, raw ~500x375 JPEGs vs --max-side {args.pre_resized} "
              "(img/CPU-s: images per CPU-second of the main process and its workers)")
        print(render_table(RESIZE_COLUMNS, report["loader"]))
        if report["end_to_end"]:
            print("\nend to end: train_one_epoch fed by the pil loader")
            print(render_table(E2E_COLUMNS, report["end_to_end"]))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"env": env, **report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
