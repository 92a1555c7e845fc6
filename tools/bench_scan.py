"""Data at scale: start-up time and loader memory of our file index vs torchvision's ImageFolder.

    python tools/bench.py --scan                       # generates 1,000 x 1,281 empty files under /tmp
    python tools/bench.py --scan --tree-dir /dev/shm   # the same tree on tmpfs
    python tools/bench_scan.py --root /data/imagenet/train --repeats 3

On one ImageNet-shaped tree (generated, or ``--root``), side by side and interleaved
(``--repeats`` rounds of: ImageFolder, ours without an index, ours with it), each in a fresh
Python process:

- start: from the process start (interpreter, imports included) to the first training
  index being known (the dataset built, the sampler's first index drawn). "ours, cold" scans
  and writes the index, "ours, warm" reads it; the page cache is warm for all of them;
- main RSS: the process's resident memory then;
- worker growth: ``--workers`` processes forked from it each look up every sample once in a
  shuffled order (what a DataLoader worker does over an epoch, minus opening the file) and
  report how much their private memory (``Private_Clean + Private_Dirty`` in
  ``/proc/self/smaps_rollup``) and PSS grew: pages copied out of the parent's.

The generated tree is deleted afterwards. Linux only (``/proc``).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def make_tree(root: Path, classes: int, per_class: int) -> Path:
    """``root/train/n%08d/n%08d_%d.JPEG``, empty files (the scan reads names, not bytes)."""
    for c in range(classes):
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            os.close(os.open(folder / f"n{c:08d}_{i}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))
    return root / "train"


def _memory() -> dict:
    """kB figures of this process from /proc."""
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                out[key] = int(rest.split()[0])
    out["Private"] = out.pop("Private_Clean") + out.pop("Private_Dirty")
    return out


class _Barrier:
    """Parent <-> forked children in lock step over pipes: the children measure "before" once
    all of them exist and "after" before any has exited, so the sharers of a page stay the same."""

    def __init__(self):
        self.go_r, self.go_w = os.pipe()
        self.res_r, self.res_w = os.pipe()

    def child_wait(self) -> None:
        os.read(self.go_r, 1)

    def child_send(self, text: str) -> None:
        os.write(self.res_w, (text + "\n").encode())

    def release(self, n: int) -> None:
        os.write(self.go_w, b"x" * n)

    def collect(self, n: int, reader) -> list:
        return [reader.readline() for _ in range(n)]


def _worker_pass(lookup, order, barrier: _Barrier) -> None:
    """In a forked child: every sample once; how much its memory grew meanwhile."""
    barrier.child_wait()
    before = _memory()
    barrier.child_send("ready")
    barrier.child_wait()
    for i in order:  # one temporary int at a time
        lookup(int(i))
    after = _memory()
    barrier.child_send(json.dumps({k: after[k] - before[k] for k in after}))
    barrier.child_wait()
    os._exit(0)


def _forked_growth(lookup, order, workers: int) -> list:
    barrier, pids = _Barrier(), []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            _worker_pass(lookup, order, barrier)
        pids.append(pid)
    reader = os.fdopen(barrier.res_r)
    barrier.release(workers)  # all forked: measure "before"
    barrier.collect(workers, reader)
    barrier.release(workers)  # all measured: make the pass
    lines = barrier.collect(workers, reader)
    barrier.release(workers)  # all measured "after": exit
    for pid in pids:
        os.waitpid(pid, 0)
    return [json.loads(line) for line in lines]


def child(kind: str, split: str, cache: str, workers: int) -> dict:
    """One measurement, in its own process (``--child``)."""
    start = float(os.environ["BENCH_SCAN_T0"])
    __import__("torch")  # both sides pay the same imports

    from classify.data.samplers import TrainSampler

    rss_before, built = _memory()["Rss"], time.time()
    if kind == "imagefolder":
        from torchvision.datasets import ImageFolder

        data = ImageFolder(split)
        lookup = data.samples.__getitem__
    else:
        from classify.data.folder import SafeImageFolder

        data = SafeImageFolder(Path(split), index_cache=cache, log=lambda line: None)
        lookup = data.table.__getitem__
    sampler = TrainSampler(len(data), seed=0)
    lookup(next(iter(sampler))[0])
    ready = time.time()
    rss = _memory()["Rss"]
    order = np.array([i for i, _ in sampler], dtype=np.int64)  # no shared int objects for the workers to touch
    growth = _forked_growth(lookup, order, workers)
    return {"kind": kind, "start_s": ready - start, "index_s": ready - built, "rss_mib": rss / 1024,
            "dataset_rss_mib": (rss - rss_before) / 1024, "samples": len(data),
            "worker_private_mib": [g["Private"] / 1024 for g in growth],
            "worker_pss_mib": [g["Pss"] / 1024 for g in growth]}


def measure(kind: str, split: str, cache: str, workers: int) -> dict:
    env = dict(os.environ, BENCH_SCAN_T0=repr(time.time()), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "tools.bench_scan", "--child", kind, "--root", split, "--cache", cache,
                           "--workers", str(workers)], env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"error: the {kind} measurement failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(split: str, *, repeats: int, workers: int, progress=print) -> dict:
    cache = tempfile.mkdtemp(prefix="classify-scan-index-")
    rows = {"ImageFolder (torchvision)": [], "ours, cold (no index)": [], "ours, warm (index cached)": []}
    try:
        for r in range(repeats):
            for name, kind in zip(rows, ("imagefolder", "ours", "ours")):
                if name.startswith("ours, cold"):
                    shutil.rmtree(cache, ignore_errors=True)
                result = measure(kind, split, cache, workers)
                rows[name].append(result)
                progress(f"round {r + 1}: {name}: start {result['start_s']:.2f} s (index {result['index_s']:.2f} s), RSS {result['rss_mib']:.0f} MiB, "
                         f"worker growth max {max(result['worker_private_mib']):.1f} MiB private")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {name: _summary(results) for name, results in rows.items()}


def _summary(results) -> dict:
    return {"start_s": statistics.median(r["start_s"] for r in results),
            "index_s": statistics.median(r["index_s"] for r in results),
            "rss_mib": statistics.median(r["rss_mib"] for r in results),
            "dataset_rss_mib": statistics.median(r["dataset_rss_mib"] for r in results),
            "worker_private_mib": max(max(r["worker_private_mib"]) for r in results),
            "worker_pss_mib": max(max(r["worker_pss_mib"]) for r in results),
            "samples": results[0]["samples"], "runs": len(results)}


def table(summary: dict, workers: int) -> str:
    lines = ["| loader | start (s) | of it: index (s) | main RSS (MiB) | of it: dataset (MiB) "
             "| growth per worker: private (MiB) | PSS (MiB) |", "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['start_s']:.2f} | {s['index_s']:.2f} | {s['rss_mib']:.0f} | "
                     f"{s['dataset_rss_mib']:.0f} | {s['worker_private_mib']:.1f} | {s['worker_pss_mib']:.1f} |")
    lines.append(f"(median of {next(iter(summary.values()))['runs']} runs; growth: the largest of {workers} "
                 f"forked workers after one pass over {next(iter(summary.values()))['samples']} samples)")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    from classify.cli import OneLineParser  # one-line usage errors, as every tool

    p = OneLineParser(prog="bench_scan.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=None, help="a split folder (class folders); default: generate one under /tmp")
    p.add_argument("--tree-dir", default="/tmp", help="where the generated tree goes (/tmp; e.g. /dev/shm when "
                   "creating 1.28M files on /tmp's disk is slow); deleted afterwards")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=1281)
    p.add_argument("--workers", type=int, default=8, help="forked workers whose memory growth is measured")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.root, args.cache, args.workers)))
        return 0
    tmp = None
    try:
        split = args.root
        if split is None:
            tmp = Path(tempfile.mkdtemp(prefix="classify-scan-tree-", dir=args.tree_dir))
            start = time.perf_counter()
            split = str(make_tree(tmp, args.classes, args.per_class))
            print(f"=> generated {args.classes} x {args.per_class} empty files in {split} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        summary = bench(split, repeats=args.repeats, workers=args.workers, progress=lambda s: print(s, flush=True))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(table(summary, args.workers))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
