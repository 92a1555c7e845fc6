"""``--prof``: a few training steps under torch.profiler; a Chrome trace and a top-ops table.

Writes ``<output-dir>/profile/trace.json`` (open in chrome://tracing or Perfetto) and
``<output-dir>/profile/top_ops.txt`` (operators sorted by self time on the device, or CPU).
"""

from pathlib import Path
from typing import Callable, Dict

from torch.profiler import ProfilerActivity, profile, schedule

from .loop import TrainParts, train_step

__all__ = ["profile_training"]

WAIT, WARMUP, ACTIVE = 1, 2, 5  # steps: skipped, profiled but discarded, recorded


def profile_training(parts: TrainParts, loader, *, out_dir: Path, report: Callable[[str], None]) -> Dict[str, str]:
    """Profile a few steps; ``report`` gets the top-ops table and where the files are."""
    out_dir = Path(out_dir) / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    activities = [ProfilerActivity.CPU]
    if parts.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    total = WAIT + WARMUP + ACTIVE
    parts.model.train()
    with profile(activities=activities, schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE),
                 record_shapes=True) as prof:
        for step, (images, target, _) in enumerate(loader):
            if images is not None:
                train_step(parts, images, target)
            prof.step()
            if step + 1 >= total:
                break
    trace, table = out_dir / "trace.json", out_dir / "top_ops.txt"
    prof.export_chrome_trace(str(trace))
    sort = "self_cuda_time_total" if parts.device.type == "cuda" else "self_cpu_time_total"
    text = prof.key_averages().table(sort_by=sort, row_limit=30) + "\n"
    table.write_text(text)
    report(text)
    report(f"=> profile written: {trace} (chrome://tracing) and {table}")
    return {"trace": str(trace), "table": str(table)}
