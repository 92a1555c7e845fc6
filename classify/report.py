"""Everything the run tells the user: log lines (rank 0), metrics.jsonl and summary.json.

The line formats are a contract (docs/architecture.md, "Logs"): ModelZoo grep pipelines read the
token after ``Loss``, after `` * Acc@1`` and the last token of the ``FPS@all`` line.
"""

import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import torch

from .errors import UserError
from .metrics import format_eta

__all__ = ["Reporter", "create_output_dir", "prepare_output_dir", "run_summary"]

_TB_NAMES = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc1": "acc1/train", "acc1": "acc1/val",
             "acc5": "acc5/val", "lr": "lr", "img_per_s": "img_per_s"}


class Reporter:
    """Rank 0 prints and writes; every other rank is silent and writes nothing."""

    def __init__(self, output_dir: Path, is_main: bool, stream=None, tensorboard: bool = False):
        self.output_dir = Path(output_dir)
        self.is_main = is_main
        self.stream = stream or sys.stdout
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
        run_eta = f"  run ETA {format_eta(run_eta_s)}" if run_eta_s is not None else ""
        self.line(f"Epoch: [{epoch}][{step:>{width}}/{steps}]  "
                  f"Time {m['time']:.3f} ({avg['time']:.3f})  Data {m['data']:.3f}  "
                  f"Loss {m['loss']:.4f} ({avg['loss']:.4f})  "
                  f"Acc@1 {m['acc1']:.3f} ({avg['acc1']:.3f})  "
                  f"LR {format_lr(lr)}  img/s {img_s:.1f}  ETA {format_eta(eta_s)}{run_eta}")

    def eval_result(self, acc1: float, acc5: float) -> None:
        self.line(f" * Acc@1 {acc1:.3f} Acc@5 {acc5:.3f}")

    def fps(self, epoch: int, fps: float) -> None:
        self.line(f"[epoch {epoch}] FPS@all {fps:.1f}")

    def epoch_record(self, epoch: int, *, lr: float, train: Dict, val: Dict) -> None:
        """One line of metrics.jsonl; also TensorBoard scalars and curves.png when available."""
        if not self.is_main:
            return
        record = {"epoch": epoch, "lr": lr, "train_loss": _round(train["loss"]), "train_acc1": _round(train["acc1"]),
                  "val_loss": _round(val.get("loss")), "acc1": _round(val.get("acc1")),
                  "acc5": _round(val.get("acc5")), "img_per_s": round(train["fps"], 1),
                  "epoch_time_s": round(train["time_s"], 3), "train_images": int(train["images"]),
                  "bad_images": int(train["bad_images"])}
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
        path = self.output_dir / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)


def prepare_output_dir(path: Path) -> Path:
    """Check that ``path`` can be the output dir, creating nothing (an error found before the
    run starts writing leaves no empty folder behind): a folder we may write into, or one we
    may create. One line if not; returns the absolute path."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"output dir '{path}' is a file; pass --output-dir to a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"output dir '{path}' is not writable ('{existing}' is a file); "
                        "pass --output-dir to a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output dir '{path}' is not writable (no write access to '{existing}'); "
                        "pass --output-dir to a writable folder")
    return path


def create_output_dir(path: Path) -> None:
    """Create ``path`` (rank 0, when the run starts writing) and check that it takes a file."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test.{time.time_ns()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UserError(f"output dir '{path}' is not writable ({e.strerror}); "
                        "pass --output-dir to a writable folder") from None


def run_summary(*, arch: str, recipe: str, epochs: int, world_size: int, global_batch_size: int,
                best_acc1: Optional[float], last_eval: Dict, fps: float, train_time: float,
                device: torch.device, amp: str, bad_images: int) -> Dict:
    """The contents of summary.json."""
    return {
        "arch": arch, "recipe": recipe, "epochs": epochs, "world_size": world_size,
        "global_batch_size": global_batch_size, "best_acc1": _round(best_acc1),
        "final_acc1": _round(last_eval.get("acc1")), "final_acc5": _round(last_eval.get("acc5")),
        "fps": round(fps, 1), "train_time_s": round(train_time, 3), "device": str(device), "amp": amp,
        "val_images": int(last_eval.get("images", 0)), "bad_images": bad_images,
    }


def format_lr(lr: float) -> str:
    """The step line's lr: 4 decimals (``0.0100``), or below 1e-3, where 4 decimals would show
    ``0.0000``, two significant digits in exponent form (``7.8e-05``)."""
    return f"{lr:.4f}" if lr == 0 or abs(lr) >= 1e-3 else f"{lr:.1e}"


def _round(value, digits: int = 4):
    """Rounded, or None for a missing or NaN value (JSON has no NaN)."""
    return None if value is None or value != value else round(float(value), digits)
