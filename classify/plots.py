"""Training curves from ``metrics.jsonl``: loss, Acc@1/Acc@5, lr and img/s against epoch.

matplotlib is an optional dependency. ``write_curves`` (called by the trainer after each
epoch) returns False when it is missing or anything goes wrong: a plot never stops a
run. ``plot_runs`` (``tools/plot.py``) raises a one-line ``UserError`` instead.

Figures are drawn on a ``matplotlib.figure.Figure`` with the Agg canvas, never through
pyplot: no global figure state, no GUI backend, safe next to a training loop.
"""

import json
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .atomic import write_atomic
from .errors import UserError

__all__ = ["read_metrics", "write_curves", "plot_runs"]

# (panel title, y label, [(record key, series label, line style)])
_PANELS = (
    ("Loss", "loss", (("train_loss", "train", "--"), ("val_loss", "val", "-"))),
    ("Accuracy", "%", (("train_acc1", "train Acc@1", "--"), ("acc1", "val Acc@1", "-"),
                       ("acc5", "val Acc@5", ":"))),
    ("Learning rate", "lr", (("lr", "lr", "-"),)),
    ("Throughput", "img/s", (("img_per_s", "img/s", "-"),)),
)

Run = Tuple[str, List[Dict]]  # (label, records sorted by epoch)


def read_metrics(path: os.PathLike) -> List[Dict]:
    """Epoch records sorted by epoch; for an epoch logged twice (a resumed run) the last
    record wins; a line that is not JSON (a half-written last line) is skipped."""
    by_epoch: Dict[int, Dict] = {}
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), (int, float)):
                by_epoch[int(record["epoch"])] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def write_curves(metrics_path: os.PathLike, out_png: os.PathLike) -> bool:
    """Draw one run's ``curves.png``. True when written; False without matplotlib, with no
    records yet, or on any error (a warning then): it must never crash training."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    try:
        records = read_metrics(metrics_path)
        if not records:
            return False
        _draw([("", records)], Path(out_png), title=Path(metrics_path).resolve().parent.name)
        return True
    except Exception as e:  # noqa: BLE001 - plotting is best effort
        warnings.warn(f"curves not written to {out_png}: {type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)
        return False


def plot_runs(run_dirs: Sequence[os.PathLike], out_png: os.PathLike) -> Path:
    """Several runs side by side, one colour per run, labelled by its folder name.
    A run is an output dir holding ``metrics.jsonl`` (or the ``.jsonl`` file itself)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("plotting needs matplotlib, which is not installed; pip install matplotlib") from None
    paths = [_metrics_file(Path(d)) for d in run_dirs]
    if not paths:
        raise UserError("no run given; pass one or more output dirs holding metrics.jsonl")
    labels = _labels([p.parent for p in paths])
    runs = []
    for label, path in zip(labels, paths):
        records = read_metrics(path)
        if not records:
            raise UserError(f"'{path}' holds no epoch records yet; wait for the first epoch to finish")
        runs.append((label, records))
    out_png = Path(out_png)
    if not out_png.parent.is_dir():
        raise UserError(f"output folder '{out_png.parent}' does not exist; create it or pick another --output")
    _draw(runs, out_png, title=None if len(runs) > 1 else labels[0])
    return out_png


def _metrics_file(path: Path) -> Path:
    if path.is_file() and path.suffix == ".jsonl":
        return path
    if not path.exists():
        raise UserError(f"run folder '{path}' not found; pass the --output-dir of a training run")
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise UserError(f"'{path}' has no metrics.jsonl; pass the --output-dir of a training run "
                        "(the file appears after the first epoch)")
    return metrics


def _labels(dirs: List[Path]) -> List[str]:
    """The folder name; parent/name where two runs share a name (e.g. a/run and b/run)."""
    names = [d.resolve().name or str(d) for d in dirs]
    return [f"{d.resolve().parent.name}/{n}" if names.count(n) > 1 else n for d, n in zip(dirs, names)]


def _draw(runs: List[Run], out_png: Path, title: Optional[str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 8), dpi=100)
    FigureCanvasAgg(fig)  # Agg whatever the user's default backend is
    # Fixed margins, not constrained layout: half the drawing time (the trainer calls this every epoch).
    axes = fig.subplots(2, 2, gridspec_kw=dict(left=0.07, right=0.98, bottom=0.07, top=0.92, hspace=0.3,
                                               wspace=0.2)).flatten()
    for ax, (name, ylabel, series) in zip(axes, _PANELS):
        for run_index, (run, records) in enumerate(runs):
            for series_index, (key, label, style) in enumerate(series):
                # One colour per run; with a single run, one per series.
                colour = f"C{(run_index if len(runs) > 1 else series_index) % 10}"
                points = [(rec["epoch"], rec[key]) for rec in records if isinstance(rec.get(key), (int, float))]
                if not points:
                    continue
                xs, ys = zip(*points)
                full = f"{run}: {label}" if run else label
                ax.plot(xs, ys, linestyle=style, marker="o", markersize=3, color=colour, label=full)
        if name == "Learning rate" and _all_positive(ax):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    # Write beside the target, then rename: a viewer never sees a half-written file.
    write_atomic(lambda f: fig.savefig(f, format="png"), out_png)


def _all_positive(ax) -> bool:
    ys = [y for line in ax.lines for y in line.get_ydata()]
    return bool(ys) and min(ys) > 0 and max(ys) / min(ys) > 20
