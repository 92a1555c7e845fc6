"""Accuracy parity: our trainer vs torchvision's reference training loop, side by side, several seeds.

    python tools/parity.py --make-digits /data/digits          # the small real dataset (below)
    python tools/parity.py --data /data/digits --seeds 0,1,2   # both sides per seed, then the table
    python tools/parity.py --data /data/digits --ours-extra=--amp-dtype=fp32   # an A/B of one of our levers

Each seed trains the same network twice on the same ImageFolder tree with the same settings
(epochs, batch, lr, cosine schedule, momentum 0.9, weight decay 1e-4, no label smoothing, train
crop / val resize / val crop = ``--image-size``):

- ``reference``: the loop of torchvision's ``references/classification/train.py`` at those flags
  (``--lr-scheduler cosineannealinglr``): ``ImageFolder`` with ``RandomResizedCrop`` (bilinear,
  antialias) + ``RandomHorizontalFlip`` + ``PILToTensor`` + ``ConvertImageDtype`` + ``Normalize`` in
  the loader workers, ``RandomSampler``, fp32, ``torch.optim.SGD`` with its default kernel,
  ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch, evaluation after every epoch.
  The network comes from the same builder as ours (``models.create_model``), seeded with the seed.
- ``ours``: ``main.py`` in a subprocess with the equivalent flags and ``--seed``, its defaults
  otherwise (precision, memory format, data pipeline); plus ``--ours-extra`` flags.

Printed per seed: best and final Acc@1 and the wall time of each side; then the means. A
benchmark, not a test: a run is minutes to hours on a CPU.

``--make-digits DIR``: scikit-learn's handwritten digits (1,797 8x8 images, 10 classes) drawn as
colour JPEGs of ``--image-size`` px: each digit upscaled to 56-88 % of the canvas, placed at a
random spot in a random colour on a noisy canvas of another colour; 80 % train / 20 % val. Needs
``scikit-learn`` (``pip install scikit-learn``) or its ``digits.csv.gz`` given with ``--digits-csv``.
"""

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image
from torchvision import transforms as T

import models
from classify.cli import OneLineParser, finite_float
from models.recipe import IMAGENET_MEAN, IMAGENET_STD

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["digit_scans", "make_digits", "reference_run", "run_trainer", "main_run", "ours_run", "gradient_fidelity", "main"]


def digit_scans(csv: Optional[str]):
    """(images N x 8 x 8 in 0..1, labels) of the UCI optical digits, scikit-learn's copy (or its CSV)."""
    if csv:
        rows = np.loadtxt(gzip.open(csv) if csv.endswith(".gz") else csv, delimiter=",")
        return rows[:, :64].reshape(-1, 8, 8) / 16.0, rows[:, 64].astype(int)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("error: the digits dataset needs scikit-learn (pip install scikit-learn) or --digits-csv "
                         "PATH (sklearn/datasets/data/digits.csv.gz from its wheel)") from None
    d = load_digits()
    return d.images / 16.0, d.target.astype(int)


DIGIT_STYLES = ("ink", "colour")


def make_digits(out: Path, *, size: int = 64, seed: int = 0, csv: Optional[str] = None, style: str = "ink") -> Path:
    """The digits as an ImageFolder tree ``out/{train,val}/<digit>/<n>.jpg`` (see the module doc).
    ``ink``: dark ink of a random colour on a light, noisy canvas of a random colour; ``colour``:
    ink and canvas both of any colour (far apart), a harder set."""
    images, labels = digit_scans(csv)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    n_val = round(len(labels) * 0.2)
    for k, i in enumerate(order):
        side = int(rng.integers(size * 9 // 16, size * 7 // 8 + 1))
        glyph = Image.fromarray((images[i] * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
        alpha = (np.asarray(glyph, np.float32) / 255)[..., None]
        if style == "ink":
            bg, fg = rng.uniform(140, 255, 3), rng.uniform(0, 100, 3)
        else:
            bg, fg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            while np.abs(bg - fg).sum() < 200:  # a digit that stands out from its canvas
                fg = rng.uniform(0, 255, 3)
        canvas = bg + rng.normal(0, 25, (size, size, 3))
        top, left = rng.integers(0, size - side + 1, 2)
        patch = canvas[top:top + side, left:left + side]
        canvas[top:top + side, left:left + side] = patch * (1 - alpha) + fg * alpha
        folder = out / ("val" if k < n_val else "train") / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(folder / f"{i:04d}.jpg", quality=90)
    return out


def reference_run(data: Path, *, arch: str, seed: int, epochs: int, batch_size: int, lr: float, image_size: int,
                  workers: int, val_resize: Optional[int] = None, lr_step_size: Optional[int] = None) -> Dict:
    """torchvision's reference loop (module doc); returns per-epoch Acc@1, best, final and time.
    ``lr_step_size``: its ``--lr-scheduler steplr`` (x0.1 every that many epochs) instead of cosine;
    ``val_resize``: its ``--val-resize-size`` (default ``image_size``)."""
    torch.manual_seed(seed)
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([T.RandomResizedCrop(image_size, antialias=True), T.RandomHorizontalFlip(),
                          T.PILToTensor(), T.ConvertImageDtype(torch.float), normalize])
    val_tf = T.Compose([T.Resize(val_resize or image_size, antialias=True), T.CenterCrop(image_size), T.PILToTensor(),
                        T.ConvertImageDtype(torch.float), normalize])
    train = torchvision.datasets.ImageFolder(str(data / "train"), train_tf)
    val = torchvision.datasets.ImageFolder(str(data / "val"), val_tf)
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, sampler=torch.utils.data.RandomSampler(train),
                                         num_workers=workers)
    val_loader = torch.utils.data.DataLoader(val, batch_size=batch_size, num_workers=workers)
    model = models.create_model(arch, num_classes=len(train.classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    if lr_step_size:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=lr_step_size, gamma=0.1)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    criterion = nn.CrossEntropyLoss()
    accs, start = [], time.perf_counter()
    for _ in range(epochs):
        model.train()
        for images, target in loader:
            loss = criterion(model(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        correct = seen = 0
        with torch.inference_mode():
            for images, target in val_loader:
                correct += (model(images).argmax(1) == target).sum().item()
                seen += len(target)
        accs.append(100.0 * correct / seen)
    return {"acc1": accs, "best": max(accs), "final": accs[-1], "time_s": time.perf_counter() - start}


def run_trainer(args: Sequence[str], out: Path, trainer: Path = ROOT / "main.py") -> Tuple[List[Dict], str]:
    """``TRAINER ARGS --output-dir OUT`` in a subprocess: its metrics.jsonl records and its stdout;
    a ``RuntimeError`` naming the exit code and the last line of its stderr when it fails."""
    done = subprocess.run([sys.executable, str(trainer), *map(str, args), "--output-dir", str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{Path(trainer).name} exited {done.returncode}: {tail}")
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()], done.stdout


def main_run(data: Path, flags: Sequence[str], keep: Optional[Path] = None) -> Dict:
    """``main.py DATA FLAGS`` (``run_trainer``; its output in a temporary folder, or in ``keep``):
    per-epoch Acc@1, best, final, its training + evaluation time (summary.json, as the
    reference's), the wall time with start-up, its precision and the command."""
    shown = " ".join(["main.py", str(data), *flags])
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        out = Path(keep or tmp)
        start = time.perf_counter()
        try:
            records, stdout = run_trainer([data, *flags], out)
        except RuntimeError as e:
            raise SystemExit(f"error: {shown} failed: {e}") from None
        elapsed = time.perf_counter() - start
        summary = json.loads((out / "summary.json").read_text())
    accs = [r["acc1"] for r in records]
    weights = [line for line in stdout.splitlines() if line.startswith("=> pretrained weights from")]
    head = None if not weights else "replaced" if "starts fresh" in weights[0] else "loaded"
    return {"acc1": accs, "best": max(accs), "final": accs[-1], "time_s": summary["train_time_s"], "wall_s": elapsed,
            "amp": summary.get("amp"), "head": head, "cmd": shown}


def ours_run(data: Path, *, arch: str, seed: int, epochs: int, batch_size: int, lr: float, image_size: int,
             workers: int, extra: Sequence[str] = ()) -> Dict:
    """``main.py`` at the flags equivalent to the reference's, its defaults otherwise (``main_run``)."""
    return main_run(data, ["-a", arch, "--epochs", str(epochs), "-b", str(batch_size), "--lr", str(lr),
                           "--lr-scheduler", "cosine", "--wd", "1e-4", "--momentum", "0.9", "--label-smoothing", "0",
                           "--image-size", str(image_size), "--val-resize", str(image_size), "--workers",
                           str(workers), "--seed", str(seed), *extra])


def gradient_fidelity(arch: str, *, image_size: int, batch_size: int, num_classes: int = 10, seed: int = 0,
                      state_dict: Optional[dict] = None) -> Dict[str, float]:
    """How far one training step's gradients are from exact, per precision: the median over the
    parameter tensors of |g - g64| / |g64|, where g64 is computed in float64 (same weights, batch,
    no dropout). ``fp16`` runs with a loss scale of 1024 (the ModelZoo recipes'), unscaled after."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, generator=g)
    target = torch.randint(0, num_classes, (batch_size,), generator=g)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    inputs = (images.float() / 255 - mean) / std
    grads = {}
    for name, dtype, autocast in (("fp64", torch.float64, None), ("fp32", torch.float32, None),
                                  ("bf16", torch.float32, torch.bfloat16), ("fp16", torch.float32, torch.float16)):
        torch.manual_seed(seed)
        model = models.create_model(arch, num_classes=num_classes)
        if state_dict is not None:
            model.load_state_dict(state_dict)
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
        model = model.to(dtype).train()
        scale = 1024.0 if autocast == torch.float16 else 1.0
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            loss = nn.functional.cross_entropy(model(inputs.to(dtype)), target)
        (loss * scale).backward()
        grads[name] = {k: p.grad.double() / scale for k, p in model.named_parameters() if p.grad is not None}
    exact = grads.pop("fp64")
    return {name: statistics.median(((g[k] - exact[k]).norm() / exact[k].norm().clamp_min(1e-30)).item()
                                    for k in exact) for name, g in grads.items()}


def _mean_sd(values: List[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def render(rows: List[Dict], sides: Sequence[Tuple[str, str]] = (("reference", "reference"), ("ours", "ours"))) -> str:
    """A markdown table: per seed, each side's best / final Acc@1 and time; then the means.
    ``sides``: (key in each row, column label)."""
    head = ["seed"] + [f"{label} {what}" for _, label in sides for what in ("best / final Acc@1", "time (s)")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["seed"])] + [c for key, _ in sides for c in (f"{r[key]['best']:.1f} / {r[key]['final']:.1f}",
                                                                     f"{r[key]['time_s']:.0f}")]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["mean"]
    for key, _ in sides:
        pick = {k: [r[key][k] for r in rows] for k in ("best", "final", "time_s")}
        cells += [f"{_mean_sd(pick['best'])} / {_mean_sd(pick['final'])}", f"{statistics.mean(pick['time_s']):.0f}"]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Acc@1 of our trainer vs torchvision's reference loop, several seeds")
    p.add_argument("--data", help="ImageFolder root with train/ and val/")
    p.add_argument("--make-digits", metavar="DIR", help="write the digits dataset into DIR, then stop (unless --data)")
    p.add_argument("--digits-csv", metavar="PATH", help="scikit-learn's digits.csv.gz (without scikit-learn)")
    p.add_argument("--digits-style", choices=DIGIT_STYLES, default="ink",
                   help="ink: dark ink on a light canvas (default); colour: any two far-apart colours, harder")
    p.add_argument("-a", "--arch", default="googlenet")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--lr", type=finite_float, default=0.01)
    p.add_argument("--image-size", type=int, default=64, help="train crop = val resize = val crop (default 64)")
    p.add_argument("-j", "--workers", type=int, default=1)
    p.add_argument("--sides", default="reference,ours", help="which sides to run (default both)")
    p.add_argument("--ours-extra", default="", help="extra main.py flags, comma-separated (e.g. --amp-dtype=fp32)")
    p.add_argument("--json", metavar="PATH", help="also write every run's figures to PATH")
    p.add_argument("--grad-check", action="store_true",
                   help="only print the gradient error of fp32/bf16/fp16 vs float64 at the builder's init")
    p.add_argument("--checkpoint", metavar="PATH", help="--grad-check at these weights (a checkpoint.pth.tar)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.make_digits:
        written = make_digits(Path(args.make_digits), size=args.image_size, csv=args.digits_csv,
                              style=args.digits_style)
        print(f"=> digits written to {written}", file=sys.stderr)
        if not args.data:
            return 0
    if args.grad_check:
        state = torch.load(args.checkpoint, weights_only=True)["state_dict"] if args.checkpoint else None
        errors = gradient_fidelity(args.arch, image_size=args.image_size, batch_size=args.batch_size, state_dict=state)
        print(f"{args.arch} at {args.image_size} px, batch {args.batch_size}, "
              f"{'weights of ' + args.checkpoint if args.checkpoint else 'the builder init'}: median relative "
              "gradient error vs float64: " + ", ".join(f"{k} {v:.3g}" for k, v in errors.items()))
        return 0
    data = Path(args.data or "")
    if not (data / "train").is_dir() or not (data / "val").is_dir():
        print(f"error: '{data}' has no train/ and val/; pass --data ROOT or --make-digits DIR", file=sys.stderr)
        return 2
    sides = args.sides.split(",")
    extra = [f for f in args.ours_extra.split(",") if f]
    common = dict(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  image_size=args.image_size, workers=args.workers)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        row = {"seed": seed}
        if "reference" in sides:
            row["reference"] = reference_run(data, seed=seed, **common)
            print(f"[seed {seed}] reference Acc@1 per epoch {[round(a, 1) for a in row['reference']['acc1']]}",
                  file=sys.stderr)
        if "ours" in sides:
            row["ours"] = ours_run(data, seed=seed, extra=extra, **common)
            print(f"[seed {seed}] ours ({row['ours']['amp']}) Acc@1 per epoch "
                  f"{[round(a, 1) for a in row['ours']['acc1']]}", file=sys.stderr)
        rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "torch": torch.__version__, "rows": rows}, indent=1))
    if all("reference" in r and "ours" in r for r in rows):
        print(render(rows))
    else:
        for r in rows:
            side = "reference" if "reference" in r else "ours"
            print(f"seed {r['seed']} {side}: best {r[side]['best']:.1f} final {r[side]['final']:.1f} "
                  f"time {r[side]['time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
