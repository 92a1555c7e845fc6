"""Everything the run tells the user: log lines (rank 0), metrics.jsonl and summary.json.

The line formats are a contract (docs/architecture.md, "Logs"): ModelZoo grep pipelines read the
token after ``Loss``, after `` * Acc@1`` and the last token of the ``FPS@all`` line.

Three formats (``--log-format``; a model folder's main.py picks its seed's):
- ``examples`` (default): pytorch/examples' ``Epoch: [e][ i/N]  Time ...  Loss l (avg)  Acc@1 ...``,
  ``Test: [ i/N]  ...``, `` * Acc@1 A Acc@5 B``, ``[epoch e] FPS@all F``;
- ``torchvision``: the references' MetricLogger, ``Epoch: [e]  [ i/N]  eta: ...  img/s: R  loss: l (avg)
  acc1: ...`` with R this process's rate, ``Test:  [ i/N]  eta: ...  loss: ...  acc1: ...``; only
  the `` * Acc@1`` summary carries ``Acc@1`` (its seed's script takes the largest in the log);
- ``prefixed``: the ModelZoo Inception-ResNet-v2 scripts' ``[npu id: 0 ] [batch_size: 192 ] * FPS@all F``
  and ``[npu id: 0 ] [AVG-ACC] * Acc@1 A Acc@5 B`` with several processes, ``Train: batch_size: 192
  * FPS@all F`` and `` * Acc@1 A Acc@5 B`` with one; the device named as it is (npu, gpu, cpu).
"""

import json
import sys
from pathlib import Path
from typing import Dict, Optional

import torch

from .atomic import write_json, write_text
from .metrics import format_eta

__all__ = ["Reporter", "run_summary", "write_eval_tables", "EVAL_DIR", "PER_CLASS", "CONFUSION"]

EVAL_DIR, PER_CLASS, CONFUSION = "eval", "per_class.csv", "confusion.csv"  # OUTPUT_DIR/eval/...

_TB_NAMES = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc1": "acc1/train", "acc1": "acc1/val",
             "acc5": "acc5/val", "lr": "lr", "img_per_s": "img_per_s"}


class Reporter:
    """Rank 0 prints and writes; every other rank is silent and writes nothing."""

    def __init__(self, output_dir: Path, is_main: bool, stream=None, tensorboard: bool = False, *,
                 log_format: str = "examples", world_size: int = 1, device: Optional[torch.device] = None,
                 per_device_batch: Optional[int] = None):
        self.output_dir = Path(output_dir)
        self.is_main = is_main
        self.stream = stream or sys.stdout
        self.format, self.world_size, self.per_device_batch = log_format, world_size, per_device_batch
        device = torch.device("cpu") if device is None else torch.device(device)
        # the real device, as the seeds name it: [npu id: 0 ], [gpu id: 0 ], [cpu id: 0 ]
        self.prefix = f"[{ {'cuda': 'gpu'}.get(device.type, device.type)} id: {device.index or 0} ]"
        self.printed_img_s, self.printed_loss = [], None  # what the step lines said (summary.json)
        self.tb = None
        self.tensorboard = tensorboard and is_main  # the writer is made at the first record (the
        # output dir is created once the run starts writing)

    def line(self, text: str) -> None:
        if self.is_main:
            print(text, file=self.stream, flush=True)

    def step(self, epoch: int, step: int, steps: int, *, window: Dict[str, float], avg: Dict[str, float],
             lr: float, img_s: float, eta_s: Optional[float], run_eta_s: Optional[float] = None) -> None:
        """The step line; ``window``: averages since the last line, ``avg``: the epoch's."""
        m = window
        width = len(str(steps))
        if self.format == "torchvision":  # img/s: this process's rate (its seed's script multiplies by ranks)
            img_s = img_s / self.world_size
            text = (f"Epoch: [{epoch}]  [{step:>{width}}/{steps}]  eta: {format_eta(eta_s)}  lr: {lr:.6g}  "
                    f"img/s: {img_s:.1f}  {_metric_columns(m, avg)}  time: {m['time']:.4f}  data: {m['data']:.4f}")
        else:
            run_eta = f"  run ETA {format_eta(run_eta_s)}" if run_eta_s is not None else ""
            text = (f"Epoch: [{epoch}][{step:>{width}}/{steps}]  "
                    f"Time {m['time']:.3f} ({avg['time']:.3f})  Data {m['data']:.3f}  "
                    f"Loss {m['loss']:.4f} ({avg['loss']:.4f})  "
                    f"Acc@1 {m['acc1']:.3f} ({avg['acc1']:.3f})  "
                    f"LR {format_lr(lr)}  img/s {img_s:.1f}  ETA {format_eta(eta_s)}{run_eta}")
        self.printed_img_s.append(round(img_s, 1))
        self.printed_loss = round(m["loss"], 4)
        self.line(text)

    def test_step(self, step: int, steps: int, *, window: Dict[str, float], avg: Dict[str, float],
                  eta_s: Optional[float]) -> None:
        """An evaluation progress line (pytorch/examples' ``Test: [ 10/391]``); ``window``: averages
        since the last line, ``avg``: so far (the last line: over every rank's images)."""
        m, width = window, len(str(steps))
        if self.format == "torchvision":
            self.line(f"Test:  [{step:>{width}}/{steps}]  eta: {format_eta(eta_s)}  {_metric_columns(m, avg)}  "
                      f"time: {m['time']:.4f}")
        else:
            self.line(f"Test: [{step:>{width}}/{steps}]  Time {m['time']:.3f} ({avg['time']:.3f})  "
                      f"Loss {m['loss']:.4f} ({avg['loss']:.4f})  Acc@1 {m['acc1']:.3f} ({avg['acc1']:.3f})  "
                      f"Acc@5 {m['acc5']:.3f} ({avg['acc5']:.3f})")

    def eval_result(self, acc1: float, acc5: float, label: str = "") -> None:
        """`` * Acc@1 ...``; the EMA weights' line is `` * EMA Acc@1 ...`` (greps for `` * Acc@1`` skip it)."""
        prefix = f"{self.prefix} [AVG-ACC]" if self.format == "prefixed" and self.world_size > 1 else ""
        self.line(f"{prefix} * {label}Acc@1 {acc1:.3f} Acc@5 {acc5:.3f}")

    def fps(self, epoch: int, fps: float) -> None:
        if self.format != "prefixed":
            self.line(f"[epoch {epoch}] FPS@all {fps:.1f}")
        elif self.world_size > 1:
            self.line(f"{self.prefix} [batch_size: {self.per_device_batch} ] * FPS@all {fps:.1f}")
        else:
            self.line(f"Train: batch_size: {self.per_device_batch} * FPS@all {fps:.1f}")

    def step_lines(self) -> Dict:
        """What rank 0's step lines printed (``step_lines`` of summary.json): the last loss, and the
        largest img/s and their mean from the third line on (the torchvision-format seed's FPS
        pipelines read those; the run's FPS is ``fps``)."""
        rates = self.printed_img_s
        return {"count": len(rates), "last_loss": self.printed_loss, "img_per_s_max": max(rates, default=None),
                "img_per_s_mean_from_third": round(sum(rates[2:]) / len(rates[2:]), 4) if rates[2:] else None}

    def epoch_record(self, epoch: int, *, lr: float, train: Dict, val: Dict, ema: Optional[Dict] = None,
                     train_size: Optional[int] = None) -> None:
        """One line of metrics.jsonl; also TensorBoard scalars and curves.png when available."""
        if not self.is_main:
            return
        record = {"epoch": epoch, "lr": lr, "train_loss": _round(train["loss"]), "train_acc1": _round(train["acc1"]),
                  "val_loss": _round(val.get("loss")), "acc1": _round(val.get("acc1")),
                  "acc5": _round(val.get("acc5")), "img_per_s": round(train["fps"], 1),
                  "epoch_time_s": round(train["time_s"], 3), "train_images": int(train["images"]),
                  "bad_images": int(train["bad_images"])}
        if val:  # an evaluated epoch: its unreadable validation images too
            record["val_bad_images"] = int(val.get("bad_images", 0))
        if train_size is not None:  # --progressive-resize
            record["train_size"] = train_size
        if ema is not None:  # --model-ema
            record.update(ema_val_loss=_round(ema.get("loss")), ema_acc1=_round(ema.get("acc1")),
                          ema_acc5=_round(ema.get("acc5")))
        metrics = self.output_dir / "metrics.jsonl"
        with open(metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard and self.tb is None:
            from torch.utils.tensorboard import SummaryWriter  # checked at parse time (config)

            self.tb = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))
        if self.tb is not None:
            for key in ("train_loss", "train_acc1", "val_loss", "acc1", "acc5", "lr", "img_per_s"):
                if record.get(key) is not None:
                    self.tb.add_scalar(_TB_NAMES[key], record[key], record["epoch"])
            self.tb.flush()
        from .plots import write_curves

        write_curves(metrics, self.output_dir / "curves.png")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def summary(self, summary: Dict) -> None:
        self.write_json("summary.json", summary)

    def write_json(self, name: str, obj: Dict) -> None:
        """``OUTPUT_DIR/name``, replaced atomically (rank 0 only)."""
        if not self.is_main:
            return
        write_json(obj, self.output_dir / name)


def _metric_columns(m: Dict[str, float], avg: Dict[str, float]) -> str:
    """torchvision's MetricLogger columns: ``loss: l (avg)  acc1: a (avg)  acc5: b (avg)``."""
    return "  ".join(f"{name}: {m[key]:.{digits}f} ({avg[key]:.{digits}f})"
                     for name, key, digits in (("loss", "loss", 4), ("acc1", "acc1", 3), ("acc5", "acc5", 3)))


def run_summary(*, arch: str, recipe: str, epochs: int, world_size: int, global_batch_size: int,
                best_acc1: Optional[float], last_eval: Dict, fps: float, train_time: float,
                device: torch.device, amp: str, bad_images: int, last_ema: Optional[Dict] = None,
                best_is_ema: bool = False, step_lines: Optional[Dict] = None) -> Dict:
    """The contents of summary.json (with --model-ema also the EMA weights' final figures)."""
    ema = {} if last_ema is None else {"final_ema_acc1": _round(last_ema.get("acc1")),
                                       "final_ema_acc5": _round(last_ema.get("acc5")), "best_is_ema": best_is_ema}
    return {
        "arch": arch, "recipe": recipe, "epochs": epochs, "world_size": world_size,
        "global_batch_size": global_batch_size, "best_acc1": _round(best_acc1),
        "final_acc1": _round(last_eval.get("acc1")), "final_acc5": _round(last_eval.get("acc5")),
        "final_val_loss": _round(last_eval.get("loss")),
        "fps": round(fps, 1), "train_time_s": round(train_time, 3), "device": str(device), "amp": amp,
        "val_images": int(last_eval.get("images", 0)), "bad_images": bad_images,
        "val_bad_images": int(last_eval.get("bad_images", 0)), **ema,
        "step_lines": step_lines or {},
    }


def format_lr(lr: float) -> str:
    """The step line's lr: 4 decimals (``0.0100``), or below 1e-3, where 4 decimals would show
    ``0.0000``, two significant digits in exponent form (``7.8e-05``)."""
    return f"{lr:.4f}" if lr == 0 or abs(lr) >= 1e-3 else f"{lr:.1e}"


def _round(value, digits: int = 4):
    """Rounded, or None for a missing or NaN value (JSON has no NaN)."""
    return None if value is None or value != value else round(float(value), digits)


def write_eval_tables(folder: Path, confusion: torch.Tensor, classes) -> None:
    """``per_class.csv`` (per true class: images, correct, acc1 = recall %, predicted = images
    predicted as it, precision %) and ``confusion.csv`` (rows: true class, columns: predicted
    class, counts) in ``folder``, each replaced atomically. ``classes``: the data's class names
    (index i -> name; missing names are the index)."""
    import csv
    import io

    n = confusion.shape[0]
    names = [str(classes[i]) if i < len(classes) else str(i) for i in range(n)]
    counts = confusion.tolist()
    per_class = io.StringIO()
    w = csv.writer(per_class, lineterminator="\n")
    w.writerow(["index", "class", "images", "correct", "acc1", "predicted", "precision"])
    for i, row in enumerate(counts):
        images, correct, predicted = sum(row), row[i], sum(r[i] for r in counts)
        w.writerow([i, names[i], images, correct, f"{100.0 * correct / images:.3f}" if images else "",
                    predicted, f"{100.0 * correct / predicted:.3f}" if predicted else ""])
    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(["true \\ predicted", *names])
    for i, row in enumerate(counts):
        w.writerow([names[i], *row])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in ((PER_CLASS, per_class.getvalue()), (CONFUSION, table.getvalue())):
        write_text(text, folder / name)
