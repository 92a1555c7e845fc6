"""Your own data, measured: our defaults vs torchvision's reference defaults, and fine-tuning vs scratch.

    python tools/parity.py --make-digits /data/digits                       # a small real dataset (64 px digits)
    python tools/own_data.py defaults --data /data/digits --seeds 0,1,2     # (a)
    python tools/own_data.py finetune --data /data/digits --seeds 0,1,2     # (b)

``defaults``: per seed, two runs at the same epochs (``--epochs``, default 12) and sizes:

- ``reference``: torchvision's ``references/classification/train.py`` with its own defaults (batch 32,
  lr 0.1, momentum 0.9, weight decay 1e-4, ``steplr`` x0.1 every 30 epochs, RandomResizedCrop's
  0.08-1 area) and the sizes our run resolved (train crop, val resize, val crop), as
  ``tools/parity.py``'s reference loop (fp32);
- ``ours``: ``main.py DATA -a ARCH --epochs N --seed S``: every other value from the network's recipe,
  fitted to the data (docs/own-data.md).

``finetune``: the classes split in two related tasks: the first ``--pretrain-classes`` classes
(default 7, digits 0-6) and the rest (7-9). One network is trained on the first task (``--pretrain-epochs``,
default 12, our defaults), then on the second task, per seed, for the same ``--epochs``:

- ``scratch``: ``main.py TASK2 -a ARCH --epochs N --seed S``;
- ``finetune``: the same with ``--pretrained`` the first task's checkpoint (the head is replaced:
  7 -> 3 classes; the fine-tuning defaults: cosine, no warm-up, every layer at the head's lr).

Both print a table of best / final val Acc@1 and the training time per seed, and the means. A
benchmark, not a test: minutes per run on a CPU.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from classify.cli import OneLineParser
from tools.parity import main_run, reference_run, render

__all__ = ["resolved_sizes", "defaults_rows", "split_tasks", "finetune_rows", "main"]


def resolved_sizes(data: Path, arch: str, epochs: int) -> Dict[str, int]:
    """The train crop, val resize and val crop that ``main.py DATA -a ARCH --epochs N`` resolves."""
    import subprocess

    out = subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "main.py"), str(data), "-a",
                          arch, "--epochs", str(epochs), "--check"], capture_output=True, text=True, check=True)
    facts = dict(line.split(" = ", 1) for line in out.stdout.splitlines() if " = " in line)
    return {"image_size": int(facts["image_size"]), "val_resize": int(facts["val_resize"]),
            "val_crop_size": int(facts["val_crop_size"]), "global_batch": int(facts["global_batch"]),
            "lr": float(facts["lr"])}


def defaults_rows(data: Path, *, arch: str, seeds: Sequence[int], epochs: int, workers: int,
                  sides: Sequence[str] = ("reference", "ours"), progress=print) -> List[Dict]:
    sizes = resolved_sizes(data, arch, epochs)
    progress(f"ours resolves: {sizes}")
    rows = []
    for seed in seeds:
        row = {"seed": seed}
        if "reference" in sides:
            row["reference"] = reference_run(data, arch=arch, seed=seed, epochs=epochs, batch_size=32, lr=0.1,
                                             image_size=sizes["image_size"], val_resize=sizes["val_resize"],
                                             workers=workers, lr_step_size=30)
            progress(f"[seed {seed}] reference Acc@1 per epoch {[round(a, 1) for a in row['reference']['acc1']]}")
        if "ours" in sides:
            row["ours"] = main_run(data, ["-a", arch, "--epochs", str(epochs), "--seed", str(seed)])
            progress(f"[seed {seed}] ours ({row['ours']['amp']}) Acc@1 per epoch "
                     f"{[round(a, 1) for a in row['ours']['acc1']]}")
        rows.append(row)
    return rows


def split_tasks(data: Path, out: Path, first: int) -> Sequence[Path]:
    """Copy DATA's classes into two ImageFolder trees: its first ``first`` classes (sorted, as
    ImageFolder orders them) and the others."""
    classes = sorted(p.name for p in (data / "train").iterdir() if p.is_dir() and not p.name.startswith("."))
    if not 0 < first < len(classes):
        raise SystemExit(f"error: --pretrain-classes must be between 1 and {len(classes) - 1}, got {first}")
    tasks = (out / "task1", out / "task2")
    for split in ("train", "val"):
        for k, name in enumerate(classes):
            shutil.copytree(data / split / name, tasks[k >= first] / split / name)
    return tasks


def finetune_rows(data: Path, *, arch: str, seeds: Sequence[int], epochs: int, pretrain_epochs: int,
                  first: int, work: Path, sides: Sequence[str] = ("scratch", "finetune"),
                  variants: Sequence[str] = (), progress=print) -> Dict:
    """Per seed: ``scratch``, ``finetune`` (the fine-tuning defaults) and one fine-tuned run per
    variant (its extra flags, comma-separated, e.g. ``--backbone-lr-scale=1``), keyed by it."""
    task1, task2 = split_tasks(data, work, first)
    pretrained = work / "task1-run"
    main_run(task1, ["-a", arch, "--epochs", str(pretrain_epochs), "--seed", str(seeds[0])], keep=pretrained)
    summary = json.loads((pretrained / "summary.json").read_text())
    progress(f"task 1 ({first} classes): best Acc@1 {summary['best_acc1']}")
    rows = []
    for seed in seeds:
        common = ["-a", arch, "--epochs", str(epochs), "--seed", str(seed)]
        tuned = [*common, "--pretrained", str(pretrained / "model_best.pth.tar")]
        row = {"seed": seed}
        if "scratch" in sides:
            row["scratch"] = main_run(task2, common)
        if "finetune" in sides:
            row["finetune"] = main_run(task2, tuned)
        for variant in variants:
            row[variant] = main_run(task2, [*tuned, *[f for f in variant.split(",") if f]])
        progress(f"[seed {seed}] " + ", ".join(f"{key} {[round(a, 1) for a in run['acc1']]}"
                                               for key, run in row.items() if key != "seed"))
        rows.append(row)
    return {"task1_best_acc1": summary["best_acc1"], "rows": rows}


def get_args_parser() -> OneLineParser:
    p = OneLineParser(description="own data: our defaults vs torchvision's (defaults); fine-tuning vs scratch "
                                  "(finetune)")
    p.add_argument("what", choices=("defaults", "finetune"))
    p.add_argument("--data", required=True, help="ImageFolder root with train/ and val/")
    p.add_argument("-a", "--arch", default="googlenet")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--pretrain-epochs", type=int, default=12, help="finetune: epochs on the first task")
    p.add_argument("--pretrain-classes", type=int, default=7, help="finetune: classes in the first task")
    p.add_argument("-j", "--workers", type=int, default=2, help="defaults: the reference's loader workers")
    p.add_argument("--sides", default=None,
                   help="which sides to run: defaults: reference,ours; finetune: scratch,finetune (the default: all)")
    p.add_argument("--variants", default="", metavar="FLAGS;FLAGS",
                   help="finetune: more fine-tuned runs, one per ';'-separated set of comma-separated main.py flags "
                        "(e.g. --variants='--backbone-lr-scale=1;--freeze-backbone')")
    p.add_argument("--json", metavar="PATH", help="also write every run's figures to PATH")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    data = Path(args.data)
    if not (data / "train").is_dir() or not (data / "val").is_dir():
        print(f"error: '{data}' has no train/ and val/ (python tools/parity.py --make-digits DIR writes one)",
              file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s]
    progress = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    if args.what == "defaults":
        sides = [side for side in (args.sides or "reference,ours").split(",") if side]
        rows = defaults_rows(data, arch=args.arch, seeds=seeds, epochs=args.epochs, workers=args.workers,
                             sides=sides, progress=progress)
        result = {"rows": rows}
        labels = {"reference": "torchvision defaults", "ours": "our defaults"}
        table = render(rows, [(side, labels[side]) for side in labels if side in sides])
    else:
        sides = [side for side in (args.sides or "scratch,finetune").split(",") if side]
        variants = [v for v in args.variants.split(";") if v]
        with tempfile.TemporaryDirectory(prefix="own-data-") as work:
            result = finetune_rows(data, arch=args.arch, seeds=seeds, epochs=args.epochs,
                                   pretrain_epochs=args.pretrain_epochs, first=args.pretrain_classes,
                                   work=Path(work), sides=sides, variants=variants, progress=progress)
        labels = {"scratch": "from scratch", "finetune": "fine-tuned"}
        table = render(result["rows"], [(side, labels[side]) for side in labels if side in sides]
                       + [(v, f"fine-tuned {v}") for v in variants])
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "torch": torch.__version__, **result}, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
