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


class Reporter:
    """Rank 0 prints and writes; every other rank is silent and writes nothing."""

    def __init__(self, output_dir: Path, is_main: bool, stream=None):
        self.output_dir = Path(output_dir)
        self.is_main = is_main
        self.stream = stream or sys.stdout

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
        if self.is_main:
            with open(self.output_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def summary(self, summary: Dict) -> None:
        if not self.is_main:
            return
        path = self.output_dir / "summary.json"
        text = json.dumps(summary, indent=2) + "\n"
        tmp = path.with_name(f".summary.json.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
