"""Throughput benchmark: training step, data loaders and loop overhead, side by side in one run.

Compute (synthetic data already on the device)::

    python tools/bench.py                                                   # sized to the device (below)
    python tools/bench.py --arch all --device cuda --batch-size 256         # every registered net
    python tools/bench.py --arch all --precision                            # fp32/channels_last/bf16/both
    python tools/bench.py --modes baseline,fast,compiled --peak-tflops 989  # + torch.compile, utilisation

Defaults sized to the device: on a CPU the default net at 64 px, batch 32, 10 steps after 2,
best of 2 (a table in about a minute on 2 cores); on an accelerator every net at its recipe's
size, batch 64, 50 steps after 5. One progress line per measurement goes to stderr.

Data (loader-only, end-to-end, loop overhead)::

    python tools/bench.py --data /path/to/imagefolder --loader pil,gpu,reference --workers 8
    python tools/bench.py --data demo       # the built-in demo set (72 px JPEGs)
    python tools/bench.py --data photos     # ~500x375 photo-like JPEGs (classify.data.photos), cached
    python tools/bench.py --make-photos DIR # generate them into DIR (and benchmark on them)

Time to accuracy and pre-resized data (``tools/bench_fast.py``)::

    python tools/bench.py --time-to-accuracy  # seed vs <net>_fast recipe: time to the seed's final Acc@1
    python tools/bench.py --pre-resized 256   # loaders per core on ~500x375 photos, raw vs --max-side 256

Without ``--arch`` the compute tables cover every registered net on an accelerator, the default
arch (``models.DEFAULT_ARCH``) on a CPU and in the data tables.

What is measured (the same definitions in every table):

- ``baseline``: the plain pytorch/examples fp32 step: float NCHW input, ``model(x)``,
  CrossEntropyLoss, ``optimizer.zero_grad()``, ``loss.backward()``, ``torch.optim.SGD``
  with its default implementation, and ``loss.item()`` every step as its meters do.
- ``fast``: our default training step: ``classify.loop.train_step`` on ``TrainParts`` built
  by ``classify.parts.build_model`` + ``build_train_parts``, the functions ``classify.run``
  uses (channels_last per device, fused/foreach SGD, the net's training loss, a constant lr
  here) with ``classify.amp`` (the recipe's mixed precision on accelerators and on CPUs with
  native bf16, off on other CPUs unless ``--amp``), uint8 input normalised on the device,
  metrics summed on the device.
- ``--precision``: modes ``fp32``, ``channels_last``, ``bf16``, ``both``: the ``fast`` step in
  each memory format x precision, speed-ups over ``fp32`` (NCHW).
- ``compiled``: ``fast`` with ``torch.compile`` (first steps = compile time, reported).
- img/s: ``--steps`` steps after ``--warmup`` steps, the device synchronised at both edges;
  with ``--repeat N`` the modes run interleaved N times and the best window is kept.
- GFLOP/img: one forward + backward in training mode, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOPs), per image.
- loaders (batches ready for the model: on the device, float, normalised):
  ``reference`` = torchvision ImageFolder + PIL + transforms RandomResizedCrop/flip/ToTensor/
  Normalize in the workers (pytorch/examples); ``pil`` = our ``build_loader`` over
  ``SafeImageFolder`` with ``train_transform`` (uint8 from the workers, normalised on the
  device); ``gpu`` = the trainer's ``--data-backend gpu`` (workers read JPEG bytes,
  batched ``torchvision.io.decode_jpeg`` + random-resized-crop/flip as tensor ops on the
  device, on the CPU when the device is the CPU). Per core: img/s per worker, and images
  per CPU-second actually used by the main process and its workers (Linux: the workers are
  the child processes that appear with the loader's iterator, read from
  ``multiprocessing.active_children()``, their CPU time from ``/proc/PID/stat``).
- end-to-end: ``train_one_epoch`` (fast step) fed by each loader; loop overhead: our
  ``train_one_epoch`` vs a bare ``for x, y in loader: forward/backward/step`` loop on the same
  model, optimizer and batches, both timed over the same steady-state window.
"""

import argparse
import gc
import json
import multiprocessing
import os
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set

import torch
import torch.nn as nn
import torchvision
from torch.utils.data import DataLoader, Subset
from torch.utils.flop_counter import FlopCounterMode

import models
from classify.amp import AMP_DTYPES, autocast, resolve_amp
from classify.cli import OneLineParser, finite_float
from classify.data import build_loader
from classify.data.device_decode import JpegFiles
from classify.data.folder import SafeImageFolder
from classify.data.photos import default_photos_root, ensure_photos
from classify.devices import cpu_count, pin_memory, resolve_device, synchronize
from classify.errors import DataError, UserError, os_error_text
from classify.fast import net_defaults, use_channels_last
from classify.loop import EpochPlan, TrainParts, train_one_epoch, train_step
from classify.metrics import Meter, Throughput, accuracy_counts, warmup_steps
from classify.parts import build_model, build_train_parts
from classify.schema import OptimConfig
from classify.transforms import Normalize, train_transform
from tools.bench_levers import LEVERS, bench_levers

MODES = ("baseline", "fast", "compiled")
# --precision: our step in each memory format x precision (channels_last, bf16 autocast), ratios to fp32 NCHW
PRECISIONS = {"fp32": (False, "fp32"), "channels_last": (True, "fp32"), "bf16": (False, "bf16"),
              "both": (True, "bf16")}
ALL_MODES = MODES + tuple(PRECISIONS)
# Defaults sized to the device: a CPU gets the default net at 64 px and a few steps (a table in
# about a minute on 2 cores), an accelerator every net at its recipe's size.
DEVICE_DEFAULTS = {"cpu": {"batch_size": 32, "steps": 10, "warmup": 2, "repeat": 2, "image_size": 64},
                   "accelerator": {"batch_size": 64, "steps": 50, "warmup": 5, "repeat": 1, "image_size": None}}
LOADERS = ("pil", "gpu", "reference")
LR, MOMENTUM, WEIGHT_DECAY = 0.001, 0.9, 1e-4  # irrelevant to speed; small enough to stay finite (batch 2 too)


@dataclass(frozen=True)
class Settings:
    device: torch.device
    batch_size: int
    steps: int
    warmup: int
    repeat: int
    num_classes: int
    amp_asked: bool
    channels_last: Optional[bool]  # None: the engine's default for the device
    peak_tflops: Optional[float]
    amp_dtype: str = "auto"  # --amp-dtype: the fast step's autocast dtype (fp32: off)


@dataclass
class Net:
    """One architecture at one input size, with its recipe's normalisation and precision."""

    arch: str
    size: int
    recipe: models.Recipe

    @property
    def loss(self) -> models.LossFn:
        """The net's training loss hook (its ``ModelEntry.loss``)."""
        return models.get_model_entry(self.arch).loss

    @classmethod
    def make(cls, arch: str, asked_size: Optional[int]) -> "Net":
        recipe = models.get_recipe(models.default_recipe(arch))
        size = max(asked_size or recipe.image_size, models.min_image_size(arch))
        return cls(arch, size, recipe)


# ----------------------------------------------------------------------------- compute


def count_gflops(net: Net, num_classes: int) -> float:
    """GFLOP per image of one training forward + backward (meta tensors: nothing is computed)."""
    with torch.device("meta"):
        model = models.create_model(net.arch, num_classes=num_classes, **net.recipe.model_kwargs)
        images = torch.empty(2, 3, net.size, net.size)  # 2: BatchNorm refuses a batch of 1
        target = torch.zeros(2, dtype=torch.long)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        _, loss = net.loss(nn.CrossEntropyLoss(), model(images), target)
        loss.backward()
    return counter.get_total_flops() / 2 / 1e9


def synthetic_batch(net: Net, s: Settings):
    """(uint8 images, float normalised NCHW images, targets), all on the device."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (s.batch_size, 3, net.size, net.size), dtype=torch.uint8, generator=g)
    target = torch.randint(0, s.num_classes, (s.batch_size,), generator=g)
    images, target = images.to(s.device), target.to(s.device)
    normalised = Normalize(net.recipe.mean, net.recipe.std).to(s.device)(images)
    return images, normalised, target


def bench_optim(s: Settings) -> OptimConfig:
    """SGD as the recipes use it, at a constant lr (the schedule does not change a step's cost)."""
    return OptimConfig(epochs=1, start_epoch=0, batch_size=s.batch_size, per_device_batch=s.batch_size, lr=LR,
                       momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, label_smoothing=0.0, lr_scheduler="constant",
                       lr_epochs=(), lr_step=30, lr_gamma=0.1, warmup_epochs=0.0)


def make_parts(net: Net, s: Settings, *, compile_model: bool = False, channels_last: Optional[bool] = None,
               amp_dtype: Optional[str] = None, levers=None) -> TrainParts:
    """Our default training step's pieces, from ``classify.parts.build_model`` + ``build_train_parts``
    (what ``classify.run`` calls): the bench measures what trains. ``channels_last`` and
    ``amp_dtype`` (auto | bf16 | fp16 | fp32) override the settings' (the ``--precision`` modes);
    ``levers``: see --levers."""
    own = own_defaults(net, s, channels_last=channels_last, amp_dtype=amp_dtype)  # the net's CPU defaults, as run.py
    channels_last = use_channels_last(s.device, own.channels_last)
    model = build_model(net.arch, num_classes=s.num_classes, device=s.device, channels_last=channels_last,
                        model_kwargs=net.recipe.model_kwargs)
    amp = resolve_amp(s.device, asked=s.amp_asked, opt_level=None, recipe_opt_level=net.recipe.opt_level,
                      loss_scale=net.recipe.loss_scale, dtype=own.amp_dtype)
    return build_train_parts(model, arch=net.arch, optim=bench_optim(s), steps_per_epoch=s.steps, device=s.device,
                             amp=amp, normalize=Normalize(net.recipe.mean, net.recipe.std, channels_last).to(s.device),
                             compile_model=compile_model, levers=levers, num_classes=s.num_classes)


def own_defaults(net: Net, s: Settings, *, channels_last: Optional[bool] = None, amp_dtype: Optional[str] = None):
    """``classify.fast.net_defaults`` for this net: its entry's CPU memory format and precision where
    neither the mode (``--precision``) nor a flag sets them."""
    entry = models.get_model_entry(net.arch)
    return net_defaults(s.device, channels_last=s.channels_last if channels_last is None else channels_last,
                        amp_dtype=amp_dtype or s.amp_dtype, amp_asked=s.amp_asked,
                        cpu_channels_last=entry.cpu_channels_last, cpu_amp_dtype=entry.cpu_amp_dtype)


def describe(parts: TrainParts) -> str:
    fmt = "NHWC" if parts.normalize.channels_last else "NCHW"
    kind = "fused" if parts.optimizer.defaults.get("fused") else "foreach"
    return f"{parts.amp.name if parts.amp.enabled else 'fp32'} {fmt} {kind}-SGD uint8"


def plain_step(model: nn.Module, criterion: nn.Module, optimizer, images, target, *, loss_fn: models.LossFn,
               precision=None, scaler=None):
    """forward / backward / step and nothing else (``loss_fn``: the net's training loss hook);
    returns (main logits, loss)."""
    with precision if precision is not None else nullcontext():
        main, loss = loss_fn(criterion, model(images), target)
    optimizer.zero_grad()
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return main, loss


def baseline_step(net: Net, s: Settings, images, target) -> Callable[[], None]:
    """pytorch/examples imagenet/main.py's step: fp32 NCHW, plain SGD, loss.item() for its meter."""
    model = models.create_model(net.arch, num_classes=s.num_classes, **net.recipe.model_kwargs).to(s.device)
    model.train()
    criterion = nn.CrossEntropyLoss().to(s.device)
    optimizer = torch.optim.SGD(model.parameters(), LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    loss_fn = net.loss

    def step():
        main, loss = plain_step(model, criterion, optimizer, images, target, loss_fn=loss_fn)
        loss.item()
        accuracy_counts(main.detach(), target)  # its top-1/top-5 meters (tensors, no sync)

    return step


def fast_step(parts: TrainParts, images, target) -> Callable[[], None]:
    parts.model.train()
    meter = Meter(["loss", "acc1", "acc5"], parts.device)
    return lambda: train_step(parts, images, target, meter=meter, n=images.shape[0])


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int):
    """(seconds of the warm-up steps, seconds of the ``steps`` timed ones)."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    begin = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    end = time.perf_counter()
    return begin - start, end - begin


@dataclass
class Result:
    """Best img/s over the repeats of one measurement, and every sample."""

    samples: List[float] = field(default_factory=list)
    first_s: Optional[float] = None  # warm-up (compile) seconds of the first round
    error: Optional[str] = None

    @property
    def best(self) -> Optional[float]:
        return max(self.samples) if self.samples else None


def mode_step(mode: str, net: Net, s: Settings, batch):
    """(step function, path description) of one mode on one (uint8, normalised, target) batch."""
    uint8, normalised, target = batch
    if mode == "baseline":
        return baseline_step(net, s, normalised, target), "fp32 NCHW SGD .item()"
    if mode in PRECISIONS:
        channels_last, dtype = PRECISIONS[mode]
        parts = make_parts(net, s, channels_last=channels_last, amp_dtype=dtype)
    else:
        parts = make_parts(net, s, compile_model=mode == "compiled")
    return fast_step(parts, uint8, target), describe(parts)


def bench_compute(net: Net, s: Settings, modes: Sequence[str], progress) -> List[Dict]:
    batch = synthetic_batch(net, s)
    steps, results, paths = {}, {m: Result() for m in modes}, {}
    for mode in modes:
        try:
            steps[mode], paths[mode] = mode_step(mode, net, s, batch)
        except Exception as e:  # an OOM or a backend that cannot build this net: a row that says so
            results[mode].error = _short(e)
    for r in range(s.repeat):
        for mode in [m for m in (modes if r % 2 == 0 else modes[::-1]) if m in steps]:  # ABBA: drift cancels
            try:
                warm_s, run_s = time_steps(steps[mode], s.device, s.warmup if r == 0 else 1, s.steps)
            except Exception as e:
                results[mode].error = _short(e)
                del steps[mode]
                continue
            results[mode].samples.append(s.steps * s.batch_size / run_s)
            if r == 0:
                results[mode].first_s = warm_s
            progress(f"{net.arch} {mode} ({paths[mode]}), round {r + 1}/{s.repeat}: "
                     f"{results[mode].samples[-1]:.1f} img/s")
    del steps, batch
    gc.collect()
    return _compute_rows(net, s, results, paths)


def reference_mode(modes: Sequence[str]) -> str:
    """The mode the speed-ups are relative to: the baseline, else fp32 NCHW (--precision), else the first."""
    return next((m for m in ("baseline", "fp32") if m in modes), modes[0])


def _compute_rows(net: Net, s: Settings, results: Dict[str, Result], paths: Dict[str, str]) -> List[Dict]:
    gflops = count_gflops(net, s.num_classes)
    base = results[reference_mode(list(results))].best
    rows = []
    for mode, res in results.items():
        img_s = res.best
        tflops = img_s * gflops / 1e3 if img_s else None
        rows.append({
            "arch": net.arch, "image_size": net.size, "mode": mode, "path": paths.get(mode, "-"),
            "img_s": _round(img_s, 1), "speedup": _round(img_s / base, 2) if img_s and base else None,
            "gflop_per_img": float(f"{gflops:.4g}"), "tflops": float(f"{tflops:.4g}") if tflops else None,
            "util_pct": _round(100 * tflops / s.peak_tflops, 1) if tflops and s.peak_tflops else None,
            "step_ms": _round(1e3 * s.batch_size / img_s, 1) if img_s else None,
            "warmup_s": _round(res.first_s, 1), "samples": [round(x, 1) for x in res.samples],
            "error": res.error,
        })
    return rows


# ----------------------------------------------------------------------------- data


def resolve_data(value: str, photos: int) -> Path:
    """``demo`` | ``photos`` | a path; returns the folder holding the class folders."""
    if value == "demo":
        from classify.data.demo import ensure_demo_data

        root = ensure_demo_data()
    elif value == "photos":
        root = ensure_photos(default_photos_root(photos), photos)
    else:
        root = Path(value).expanduser()
        if not root.is_dir():
            raise DataError(f"--data '{value}' is not a folder; pass an ImageFolder root (with train/ or "
                            f"class folders), 'demo' or 'photos'")
    return root / "train" if (root / "train").is_dir() else root


def _indices(size: int, count: int) -> List[int]:
    """``count`` indices into a data set of ``size`` (shuffled once, repeated as needed)."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(0)).tolist()
    return [order[i % size] for i in range(count)]


@dataclass
class Backend:
    """A loader factory and how its batches become (images, target, n_bad) for the training loop."""

    name: str
    make: Callable[[], DataLoader]
    to_triple: Callable


def make_backend(name: str, folder: Path, net: Net, s: Settings, workers: int) -> Backend:
    count = s.steps * s.batch_size
    pin = pin_memory(s.device)
    if name == "pil":
        data = SafeImageFolder(folder, train_transform(net.size))
        subset = Subset(data, _indices(len(data), count))
        return Backend(name, lambda: build_loader(subset, batch_size=s.batch_size, workers=workers, train=True,
                                                  pin_memory=pin), lambda batch: batch)
    if name == "reference":
        from torchvision import transforms as T

        tf = T.Compose([T.RandomResizedCrop(net.size), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize(net.recipe.mean, net.recipe.std)])
        data = torchvision.datasets.ImageFolder(str(folder), tf)
        subset = Subset(data, _indices(len(data), count))
        return Backend(name, lambda: DataLoader(subset, s.batch_size, shuffle=True, num_workers=workers,
                                                pin_memory=pin), lambda batch: (batch[0], batch[1], 0))
    folder_data = SafeImageFolder(folder)  # gpu: the trainer's --data-backend gpu
    samples = folder_data.table.subset(_indices(len(folder_data), count))
    jpeg = JpegFiles(samples, folder_data.classes, True, net.size, net.size)
    return Backend(name, lambda: build_loader(jpeg, batch_size=s.batch_size, workers=workers, train=True,
                                              pin_memory=pin, device=s.device), lambda batch: batch)


def _child_pids() -> Set[int]:
    """PIDs of this process's live child processes, from multiprocessing's own registry (a
    DataLoader starts its workers as ``multiprocessing`` processes, whatever the start method)."""
    return {p.pid for p in multiprocessing.active_children()}


def _cpu_seconds(pids: Sequence[int]) -> Optional[float]:
    """CPU time of this process (all threads) plus its loader workers; None where /proc is missing."""
    total = time.process_time()
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, ValueError, IndexError):
            return None
    return total


def measure_loader(backend: Backend, normalize: Normalize, device: torch.device, skip: int) -> Dict:
    """Batches ready for the model (on the device, normalised) per second, after ``skip`` batches; and
    images per CPU-second over the whole pass (every batch, from the workers' start: a window that
    starts after ``skip`` batches would leave out the batches the workers had already prefetched by
    then, and count their images at no CPU cost)."""
    before = _child_pids()
    loader = backend.make()
    it = iter(loader)  # starts the loader's workers (if any): the children that were not there before
    pids, batches = sorted(_child_pids() - before), len(loader)
    cpu0 = _cpu_seconds(pids)
    skip = min(skip, batches - 1)
    images = all_images = bad = 0
    begin = time.perf_counter() if skip == 0 else None
    for i in range(batches):
        x, _, n_bad = backend.to_triple(next(it))
        if x is not None:
            x = normalize(x.to(device, non_blocking=True))
        n = 0 if x is None else x.shape[0]
        all_images += n
        if i >= skip:
            images, bad = images + n, bad + n_bad
        if i == skip - 1:
            synchronize(device)
            begin = time.perf_counter()
    synchronize(device)
    seconds, cpu1 = time.perf_counter() - begin, _cpu_seconds(pids)
    del it, loader
    gc.collect()  # the workers exit now, not during the next measurement
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return {"img_s": images / seconds, "img_per_cpu_s": all_images / cpu if cpu else None, "bad": bad}


class Feed:
    """What ``train_one_epoch`` iterates: a loader's batches as (images, target, n_bad)."""

    def __init__(self, loader, to_triple):
        self.loader, self.to_triple = loader, to_triple

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return (self.to_triple(batch) for batch in self.loader)


def ours_loop(parts: TrainParts, feed) -> float:
    """``train_one_epoch`` as the trainer runs it (the step lines' figures, read at every print
    interval, kept in a list); its FPS."""
    plan = EpochPlan(epoch=0, steps_per_epoch=len(feed), print_freq=10)
    lines = []
    stats = train_one_epoch(parts, feed, plan, lambda *where, **figures: lines.append(figures))
    return stats["fps"]


def bare_loop(parts: TrainParts, feed) -> float:
    """``for x, y in loader: forward/backward/step`` on the same parts; FPS over the same window."""
    parts.model.train()
    device = parts.device
    speed = Throughput(device, warmup_steps(len(feed)))
    speed.begin()
    for images, target, _ in feed:
        if images is None:
            continue
        images = parts.normalize(images.to(device, non_blocking=True))
        target = target.to(device, non_blocking=True)
        plain_step(parts.model, parts.criterion, parts.optimizer, images, target, loss_fn=parts.loss_fn,
                   precision=autocast(device, parts.amp), scaler=parts.scaler)
        speed.step(images.shape[0])
    return speed.fps()


def bench_overhead(parts: TrainParts, feed, repeat: int) -> Dict:
    """Ours vs bare, alternated (ABBA...) after one warm-up pass; best of each."""
    bare_loop(parts, feed)
    ours, bare = Result(), Result()
    for r in range(max(repeat, 1)):
        order = ((ours, ours_loop), (bare, bare_loop)) if r % 2 else ((bare, bare_loop), (ours, ours_loop))
        for res, loop in order:
            res.samples.append(loop(parts, feed))
    ratio = ours.best / bare.best if bare.best else None
    return {"bare_img_s": _round(bare.best, 1), "ours_img_s": _round(ours.best, 1), "ratio": _round(ratio, 3),
            "overhead_pct": _round(100 * (1 - ratio), 1) if ratio else None,
            "bare_samples": [round(x, 1) for x in bare.samples],
            "ours_samples": [round(x, 1) for x in ours.samples]}


def bench_loaders(folder: Path, net: Net, s: Settings, loaders: Sequence[str], workers: int,
                  progress) -> List[Dict]:
    """Loader-only img/s of each backend, interleaved (forward, then reversed) over the repeats.

    With loader workers the main process runs on one intra-op thread here: its share of the loading is
    receiving and normalising batches, and with more threads OpenMP's idle threads spin between batches,
    CPU time that img/CPU-s would count as the loader's (measured: 0.9 ms/image with 2 threads against
    0.2 ms with 1, for the same batches)."""
    backends = [make_backend(name, folder, net, s, workers) for name in loaders]
    normalize = Normalize(net.recipe.mean, net.recipe.std).to(s.device)
    samples: Dict[str, List[Dict]] = {b.name: [] for b in backends}
    threads = torch.get_num_threads()
    if workers > 0:
        torch.set_num_threads(1)
    try:
        for r in range(s.repeat):
            for b in (backends if r % 2 == 0 else backends[::-1]):
                samples[b.name].append(measure_loader(b, normalize, s.device, max(s.warmup, workers)))
                progress(f"loader {b.name}: {samples[b.name][-1]['img_s']:.1f} img/s")
    finally:
        torch.set_num_threads(threads)
    best = {name: max(x["img_s"] for x in runs) for name, runs in samples.items()}
    cpu = {name: max((x["img_per_cpu_s"] or 0 for x in runs), default=0) or None for name, runs in samples.items()}
    ref, ref_cpu = best.get("reference"), cpu.get("reference")
    return [{"loader": name, "image_size": net.size, "workers": workers, "img_s": round(best[name], 1),
             "img_s_per_worker": round(best[name] / max(workers, 1), 1), "img_per_cpu_s": _round(cpu[name], 1),
             "vs_reference": _round(best[name] / ref, 2) if ref else None,
             "vs_reference_per_cpu_s": _round(cpu[name] / ref_cpu, 2) if cpu[name] and ref_cpu else None,
             "bad_images": sum(x["bad"] for x in runs), "samples": [round(x["img_s"], 1) for x in runs]}
            for name, runs in samples.items()]


def bench_end_to_end(parts: TrainParts, backends: List[Backend], net: Net, s: Settings, progress) -> List[Dict]:
    """train_one_epoch fed by each loader, next to the same step on synthetic data (compute-only)."""
    uint8, _, target = synthetic_batch(net, s)
    compute = Result()
    e2e: Dict[str, Result] = {b.name: Result() for b in backends}
    for r in range(s.repeat):
        _, run_s = time_steps(fast_step(parts, uint8, target), s.device, s.warmup if r == 0 else 1, s.steps)
        compute.samples.append(s.steps * s.batch_size / run_s)
        for b in backends:
            e2e[b.name].samples.append(ours_loop(parts, Feed(b.make(), b.to_triple)))
            progress(f"{net.arch} end-to-end {b.name}: {e2e[b.name].samples[-1]:.1f} img/s")
    return [{"arch": net.arch, "image_size": net.size, "loader": name, "img_s": round(res.best, 1),
             "compute_img_s": round(compute.best, 1), "pct_of_compute": round(100 * res.best / compute.best, 1),
             "samples": [round(x, 1) for x in res.samples], "compute_samples": [round(x, 1) for x in compute.samples]}
            for name, res in e2e.items()]


def bench_data(folder: Path, nets: List[Net], s: Settings, loaders: Sequence[str], workers: int,
               progress, loader_only: bool = False) -> Dict[str, List[Dict]]:
    out = {"loader": bench_loaders(folder, nets[0], s, loaders, workers, progress), "end_to_end": [],
           "overhead": []}
    for net in ([] if loader_only else nets):
        backends = [make_backend(name, folder, net, s, workers) for name in loaders]
        parts = make_parts(net, s)
        out["end_to_end"] += bench_end_to_end(parts, backends, net, s, progress)
        uint8, _, target = synthetic_batch(net, s)
        feeds = [("synthetic", [(uint8, target, 0)] * s.steps)]
        feeds += [("pil loader", Feed(b.make(), b.to_triple)) for b in backends if b.name == "pil"]
        for source, feed in feeds:
            row = {"arch": net.arch, "image_size": net.size, "source": source, **bench_overhead(parts, feed, s.repeat)}
            out["overhead"].append(row)
            progress(f"{net.arch} overhead ({source}): {row['overhead_pct']}%")
        del parts, feeds
        gc.collect()
    return out


# ----------------------------------------------------------------------------- output


COMPUTE_COLUMNS = [("arch", "arch", "{}"), ("px", "image_size", "{}"), ("mode", "mode", "{}"),
                   ("path", "path", "{}"), ("img/s", "img_s", "{:.1f}"), ("speed-up", "speedup", "{:.2f}x"),
                   ("GFLOP/img", "gflop_per_img", "{:.3g}"), ("TFLOP/s", "tflops", "{:.3g}"),
                   ("util %", "util_pct", "{:.1f}")]
LOADER_COLUMNS = [("loader", "loader", "{}"), ("px", "image_size", "{}"), ("workers", "workers", "{}"),
                  ("img/s", "img_s", "{:.1f}"), ("img/s/worker", "img_s_per_worker", "{:.1f}"),
                  ("img/CPU-s", "img_per_cpu_s", "{:.1f}"), ("x ref", "vs_reference", "{:.2f}x"),
                  ("x ref per CPU-s", "vs_reference_per_cpu_s", "{:.2f}x")]
E2E_COLUMNS = [("arch", "arch", "{}"), ("px", "image_size", "{}"), ("loader", "loader", "{}"),
               ("img/s", "img_s", "{:.1f}"),
               ("compute-only img/s", "compute_img_s", "{:.1f}"), ("% of compute", "pct_of_compute", "{:.1f}")]
LEVER_COLUMNS = [("arch", "arch", "{}"), ("lever", "lever", "{}"), ("img/s", "img_per_s", "{:.1f}"),
                 ("ms/step", "step_ms", "{:.2f}"), ("cost %", "cost_pct", "{:+.1f}")]
OVERHEAD_COLUMNS = [("arch", "arch", "{}"), ("px", "image_size", "{}"), ("batches", "source", "{}"),
                    ("bare loop img/s", "bare_img_s", "{:.1f}"), ("train_one_epoch img/s", "ours_img_s", "{:.1f}"),
                    ("ratio", "ratio", "{:.3f}"), ("overhead %", "overhead_pct", "{:.1f}")]


def render_table(columns, rows: List[Dict]) -> str:
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        cells.append([_cell(row.get(key), fmt, row.get("error")) for _, key, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _cell(value, fmt: str, error: Optional[str]) -> str:
    if value is None:
        return "failed" if error else "-"
    return fmt.format(value)


def _round(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(value, digits)


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


def environment(device: torch.device) -> Dict:
    name = getattr(getattr(torch, device.type, None), "get_device_name", None)
    host = platform.processor() or platform.machine()
    try:
        host = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cpus = cpu_count()
    return {"device": str(device), "device_name": name(device) if name and device.type != "cpu" else host,
            "cpus": cpus, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version()}


def print_text(report: Dict) -> None:
    env, st = report["env"], report["settings"]
    print(f"bench: {env['device']} ({env['device_name']}), {env['cpus']} CPUs, {env['threads']} torch threads, "
          f"torch {env['torch']}, batch {st['batch_size']}, {st['steps']} steps after {st['warmup']} warm-up, "
          f"best of {st['repeat']}")
    reference = reference_mode([r["mode"] for r in report.get("compute") or [{"mode": "baseline"}]])
    sections = [("compute", f"training step, synthetic data on the device (speed-up over {reference})",
                 COMPUTE_COLUMNS),
                ("loader", "loader only: batches ready on the device", LOADER_COLUMNS),
                ("end_to_end", "end to end: train_one_epoch (fast step) fed by each loader", E2E_COLUMNS),
                ("overhead", "loop overhead: train_one_epoch vs a bare forward/backward/step loop",
                 OVERHEAD_COLUMNS),
                ("levers", "training levers: step cost vs every lever off (tools/bench_levers.py)", LEVER_COLUMNS)]
    for key, title, columns in sections:
        if report.get(key):
            print(f"\n{title}\n{render_table(columns, report[key])}")
    for note in report["notes"]:
        print(f"note: {note}")


# ----------------------------------------------------------------------------- CLI


def _csv(choices: Optional[Sequence[str]] = None):
    def parse(text: str) -> List[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if choices is not None and x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"'{text}': choose from {', '.join(choices)}" if choices
                                             else "empty list")
        return items
    return parse


def get_args_parser() -> OneLineParser:
    p = OneLineParser(prog="bench.py", description="Throughput benchmark (see the module docstring).")
    add = p.add_argument
    add("--arch", "-a", type=_csv(), default=None,
        help=f"comma list, or 'all' (default: {models.DEFAULT_ARCH} on cpu and with --data, else all)")
    add("--device", default="auto", help="auto | cpu | cuda | gpu | npu")
    add("-b", "--batch-size", "--batch_size", dest="batch_size", type=int, default=None,
        help="default: 32 on cpu, else 64")
    add("--steps", type=int, default=None, help="timed steps (with --data: batches per pass); default: 10 on cpu, "
        "else 50")
    add("--warmup", type=int, default=None, help="untimed steps first (loaders: at least --workers batches); "
        "default: 2 on cpu, else 5")
    add("--repeat", type=int, default=None, help="interleaved rounds; the best is reported (default: 2 on cpu, "
        "else 1)")
    add("--image-size", "--image_size", type=int, default=None,
        help="default: 64 on cpu, else each net's recipe's (e.g. 224); raised to a net's minimum")
    add("--num-classes", "--num_classes", type=int, default=1000)
    add("--modes", type=_csv(ALL_MODES), default=None,
        help="baseline,fast,compiled (default: all; on cpu baseline,fast); or any of " + ",".join(PRECISIONS))
    add("--precision", action="store_true",
        help="modes " + ",".join(PRECISIONS) + ": our step in fp32 / channels_last / bf16 autocast / both, "
             "ratios to fp32 NCHW")
    add("--amp", action="store_true", help="autocast on CPUs without native bf16 too (elsewhere the recipe's)")
    add("--amp-dtype", "--amp_dtype", choices=AMP_DTYPES, default="auto",
        help="the fast step's autocast dtype, as the trainer's flag (fp32: off)")
    add("--channels-last", "--channels_last", action=argparse.BooleanOptionalAction, default=None,
        help="NHWC for fast/compiled (default: the engine's, on for cuda and cpu)")
    add("--threads", type=int, default=None, help="torch intra-op threads of the main process (default: torch's)")
    add("--peak-tflops", type=finite_float, default=None, help="the device's peak, for utilisation %%")
    add("--json", action="store_true", help="print JSON instead of tables")
    add("--json-out", default=None, metavar="FILE", help="also write the JSON report to FILE (tables still printed)")
    add("--data", default=None, help="ImageFolder root, 'demo' or 'photos': loader, end-to-end, overhead")
    add("--loader", type=_csv(LOADERS), default=list(LOADERS), help="pil,gpu,reference")
    add("--loader-only", action="store_true", help="with --data: skip the end-to-end and overhead runs")
    add("-j", "--workers", type=int, default=None, help="loader workers (default: CPUs, at most 8)")
    add("--make-photos", default=None, metavar="DIR", help="write ~500x375 photo-like JPEGs to DIR and use them")
    add("--num-photos", type=int, default=300, help="how many photos to generate")
    add("--levers", type=_csv(tuple(LEVERS)), default=None, metavar="NAMES",
        help=f"step cost of training levers vs all off (tools/bench_levers.py): {','.join(LEVERS)}")
    return p


def apply_device_defaults(args, device: torch.device) -> Dict[str, object]:
    """Fill the sizes not given on the command line with the device's defaults; returns those taken."""
    defaults = DEVICE_DEFAULTS["cpu" if device.type == "cpu" else "accelerator"]
    taken = {name: value for name, value in defaults.items() if getattr(args, name) is None}
    for name, value in taken.items():
        setattr(args, name, value)
    return taken


def _settings(args, device: torch.device) -> Settings:
    for name in ("batch_size", "steps", "repeat", "num_classes", "num_photos"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0 or (args.workers is not None and args.workers < 0):
        raise UserError("--warmup and --workers must be >= 0")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return Settings(device, args.batch_size, args.steps, args.warmup, args.repeat, args.num_classes, args.amp,
                    args.channels_last, args.peak_tflops, args.amp_dtype)


def _nets(args, device: torch.device) -> List[Net]:
    one = args.data or args.make_photos or device.type == "cpu"
    archs = args.arch or ([models.DEFAULT_ARCH] if one else ["all"])
    archs = models.list_models() if archs == ["all"] else archs
    unknown = [a for a in archs if a not in models.list_models()]
    if unknown:
        raise UserError(f"unknown --arch {', '.join(unknown)}; choose from {', '.join(models.list_models())} or all")
    if args.image_size is not None and args.image_size < 8:
        raise UserError(f"--image-size {args.image_size} is too small; use at least 32")
    return [Net.make(a, args.image_size) for a in archs]


def _modes(args, device: torch.device) -> List[str]:
    if args.precision and args.modes:
        raise UserError("--precision picks the modes " + ",".join(PRECISIONS) + "; drop --modes or --precision")
    if args.precision:
        return list(PRECISIONS)
    return args.modes or (["baseline", "fast"] if device.type == "cpu" else list(MODES))


def announce(device: torch.device, nets: List[Net], s: Settings, taken: Dict[str, object]) -> str:
    """The first progress line: what is about to be measured, and which sizes were the device's defaults."""
    sizes = ", ".join(f"{n.arch} {n.size} px" for n in nets)
    line = (f"bench on {device}: {sizes}; batch {s.batch_size}, {s.steps} steps after {s.warmup} warm-up, "
            f"best of {s.repeat}")
    if taken:
        flags = ", ".join("--" + name.replace("_", "-") for name in taken)
        line += f" ({flags}: the {device.type} defaults)"
    own = [f"{n.arch} {src}" for n in nets for src in [own_defaults(n, s).source] if src]
    if own:
        line += f"; fast step with the nets' own {device.type} defaults: {', '.join(own)} (models/<net>/ entry)"
    return line


def run(args, progress) -> Dict:
    device = resolve_device(args.device)
    taken = apply_device_defaults(args, device)
    s = _settings(args, device)
    nets = _nets(args, device)
    modes = _modes(args, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes; pytorch/examples sets it too
    notes = [f"{n.arch}: image size raised to its minimum {n.size}" for n in nets
             if args.image_size is not None and n.size > args.image_size]
    report = {"env": environment(device), "notes": notes,
              "settings": {"batch_size": s.batch_size, "steps": s.steps, "warmup": s.warmup, "repeat": s.repeat,
                           "num_classes": s.num_classes, "amp_asked": s.amp_asked, "amp_dtype": s.amp_dtype,
                           "peak_tflops": s.peak_tflops, "device_defaults": sorted(taken)}}
    intro = announce(device, nets, s, taken)  # printed once the inputs are checked (errors stay one line)
    if args.data or args.make_photos:
        return run_data(args, report, nets, s, progress, intro)
    return run_compute(args, report, nets, s, modes, progress, intro)


def run_data(args, report: Dict, nets: List[Net], s: Settings, progress, intro: str) -> Dict:
    """--data / --make-photos: loader-only, end-to-end and loop-overhead tables."""
    notes, device = report["notes"], s.device
    if args.make_photos:
        ensure_photos(Path(args.make_photos).expanduser(), args.num_photos)
    folder = resolve_data(args.data or args.make_photos, args.num_photos)
    workers = args.workers if args.workers is not None else min(8, report["env"]["cpus"] or 1)
    report["settings"].update(data=str(folder), workers=workers)
    progress(f"{intro}; data {folder}, {workers} loader workers")
    cpus, threads = report["env"]["cpus"] or 1, torch.get_num_threads()
    if device.type == "cpu" and workers and threads + workers > cpus and threads > max(1, cpus - workers):
        notes.append(f"{threads} torch threads + {workers} loader workers on {cpus} CPUs: oversubscribed, "
                     f"training steps slow down and vary; try --threads {max(1, cpus - workers)}")
    report.update(bench_data(folder, nets, s, args.loader, workers, progress, args.loader_only))
    if "gpu" in args.loader:
        notes.append(f"gpu = the trainer's --data-backend gpu: workers read JPEG bytes, decode_jpeg + "
                     f"crop/flip run on {device.type} in the main process")
    return report


def run_compute(args, report: Dict, nets: List[Net], s: Settings, modes: List[str], progress,
                intro: str) -> Dict:
    """The training step of each net in each mode, interleaved."""
    notes = report["notes"]
    progress(f"{intro}; modes {','.join(modes)}")
    if args.levers:  # tools/bench_levers.py: each lever's step against the default one
        report["levers"] = [row for net in nets for row in bench_levers(
            net, s, args.levers, progress, make_parts=make_parts, synthetic_batch=synthetic_batch,
            time_steps=time_steps)]
        return report
    if s.device.type == "cpu" and args.modes is None and not args.precision:
        notes.append("compiled skipped on cpu by default (torch.compile costs minutes per net there); "
                     "add --modes baseline,fast,compiled")
    notes += [f"{n.arch}: fast step with its entry's {s.device.type} defaults ({own_defaults(n, s).source}); "
              "the flags --channels-last/--amp-dtype override them" for n in nets if own_defaults(n, s).source]
    report["compute"] = [row for net in nets for row in bench_compute(net, s, modes, progress)]
    notes += [f"{r['arch']} compiled: first {s.warmup} steps (compile) took {r['warmup_s']} s"
              for r in report["compute"] if r["mode"] == "compiled" and r["warmup_s"] is not None]
    notes += [f"{r['arch']} {r['mode']} failed: {r['error']}" for r in report["compute"] if r["error"]]
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--scan" in argv:  # data at scale: index start-up and loader memory (tools/bench_scan.py)
        import bench_scan

        return bench_scan.main([a for a in argv if a != "--scan"])
    if "--time-to-accuracy" in argv or any(a.startswith("--pre-resized") for a in argv):  # tools/bench_fast.py
        from tools.bench_fast import main as fast_main

        return fast_main(argv)
    args = get_args_parser().parse_args(argv)
    progress = lambda text: print(f"  {text}", file=sys.stderr, flush=True)  # noqa: E731 (stderr: --json stays clean)
    try:
        report = run(args, progress)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    except UserError as e:
        print(f"bench.py: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # --json-out or a data path the filesystem refused
        print(f"bench.py: error: {os_error_text(e)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
