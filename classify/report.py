"""Everything the run tells the user: log lines (rank 0), metrics.jsonl and summary.json.

The line formats are a contract (DESIGN.md "Logs"): ModelZoo grep pipelines read the
token after ``Loss``, after `` * Acc@1`` and the last token of the ``FPS@all`` line.
"""

import json
import os
import sys
from pathlib import Path
from typing import Dict, Optional

from .metrics import format_eta

__all__ = ["Reporter"]

_TB_NAMES = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc1": "acc1/train", "acc1": "acc1/val",
             "acc5": "acc5/val", "lr": "lr", "img_per_s": "img_per_s"}


class Reporter:
    """Rank 0 prints and writes; every other rank is silent and writes nothing."""

    def __init__(self, output_dir: Path, is_main: bool, stream=None, tensorboard: bool = False):
        self.output_dir = Path(output_dir)
        self.is_main = is_main
        self.stream = stream or sys.stdout
        self.tb = None
        if tensorboard and is_main:
            from torch.utils.tensorboard import SummaryWriter  # checked at parse time (config)

            self.tb = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def line(self, text: str) -> None:
        if self.is_main:
            print(text, file=self.stream, flush=True)

    def step(self, epoch: int, step: int, steps: int, m: Dict[str, float], avg: Dict[str, float],
             lr: float, img_s: float, eta_s: Optional[float], run_eta_s: Optional[float] = None) -> None:
        width = len(str(steps))
        run_eta = f"  run ETA {format_eta(run_eta_s)}" if run_eta_s is not None else ""
        self.line(f"Epoch: [{epoch}][{step:>{width}}/{steps}]  "
                  f"Time {m['time']:.3f} ({avg['time']:.3f})  Data {m['data']:.3f}  "
                  f"Loss {m['loss']:.4f} ({avg['loss']:.4f})  "
                  f"Acc@1 {m['acc1']:.3f} ({avg['acc1']:.3f})  "
                  f"LR {lr:.4f}  img/s {img_s:.1f}  ETA {format_eta(eta_s)}{run_eta}")

    def eval_result(self, acc1: float, acc5: float) -> None:
        self.line(f" * Acc@1 {acc1:.3f} Acc@5 {acc5:.3f}")

    def fps(self, epoch: int, fps: float) -> None:
        self.line(f"[epoch {epoch}] FPS@all {fps:.1f}")

    def epoch_record(self, record: Dict) -> None:
        """One line of metrics.jsonl; also TensorBoard scalars and curves.png when available."""
        if not self.is_main:
            return
        metrics = self.output_dir / "metrics.jsonl"
        with open(metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
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
        if not self.is_main:
            return
        path = self.output_dir / "summary.json"
        text = json.dumps(summary, indent=2) + "\n"
        tmp = path.with_name(f".summary.json.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
