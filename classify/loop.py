"""The training and evaluation loops. Both return dicts of averaged (global) metrics.

No host sync per step: losses and accuracy counts are summed on the device and read at
print intervals; the FPS window syncs the device only at its edges (metrics.Throughput).
At a print interval the ranks agree, in one all-reduce, on whether any of them saw a
non-finite loss or received a stop signal (guard.agree).
"""

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

from models import LossFn, plain_loss

from .amp import AmpSettings, autocast
from .devices import dist_ready
from .errors import DataError, NonFiniteLoss
from .guard import StopRequest, agree
from .metrics import Meter, Throughput, accuracy_counts, counts_over_ranks, sum_over_ranks, warmup_steps
from .transforms import Normalize, resize_batch

__all__ = ["TrainParts", "EpochPlan", "Micro", "train_one_epoch", "train_step", "evaluate", "tta_logits", "StepLine",
           "Log"]

# The loop reports through plain callbacks (the run passes its classify.report.Reporter's methods):
# ``on_step(epoch, step, steps, *, window, avg, lr, img_s, eta_s, run_eta_s)`` at each print interval of
# training, ``on_step(step, steps, *, window, avg, eta_s)`` during evaluation (``window``: averages since
# the last call, ``avg``: so far); ``log(text)`` for a warning line.
StepLine = Callable[..., None]
Log = Callable[[str], None]


def _silent(text: str) -> None:
    pass


@dataclass
class TrainParts:
    """What one optimisation step needs."""

    model: nn.Module  # possibly DDP-wrapped
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: Optional[torch.amp.GradScaler]
    device: torch.device
    amp: AmpSettings
    normalize: Normalize
    loss_fn: LossFn = plain_loss  # the network's training loss (its ModelEntry.loss)
    # Check every loss on the host before the update (free on CPU; one sync per step elsewhere,
    # so accelerators check the averaged loss at print intervals instead).
    check_finite: bool = False
    nan_skips: int = 0  # non-finite steps to skip before stopping (--nan-policy skip:N)
    accum_steps: int = 1  # micro-batches per optimizer step (--grad-accum-steps)
    clip_grad_norm: Optional[float] = None  # --clip-grad-norm
    ema: Optional[nn.Module] = None  # --model-ema: a classify.ema.ModelEma
    mix: Optional[Callable] = None  # --mixup-alpha/--cutmix-alpha: (images, labels) -> (images, soft labels)
    train_size: Optional[int] = None  # --progressive-resize: this epoch's train resolution
    frozen: tuple = ()  # --freeze-backbone: modules kept in eval mode while the head trains


@dataclass(frozen=True)
class Micro:
    """Where a batch sits in its gradient-accumulation group (``--grad-accum-steps``). Groups
    are counted from the epoch's first step; a pass's last batch closes its group (the epoch's
    tail, or the end of a ``--stop-step-num`` pass), whose loss is averaged over its own size."""

    start: int  # the group's first step
    first: bool
    last: bool
    size: int  # batches in the group

    @classmethod
    def at(cls, step: int, accum: int, *, pass_start: int, pass_end: int) -> "Micro":
        aligned = step - step % accum
        start, end = max(aligned, pass_start), min(aligned + accum, pass_end)
        return cls(start=start, first=step == start, last=step + 1 == end, size=end - start)


@dataclass
class EpochPlan:
    """Where this pass starts and when it may stop."""

    epoch: int
    steps_per_epoch: int  # full epoch, for the [step/steps] counter
    start_step: int = 0  # > 0 when resuming mid-epoch
    max_steps: Optional[int] = None  # --stop-step-num: stop after this many steps of this pass
    epochs_left: int = 0  # after this one, for the run ETA
    print_freq: int = 10
    world_size: int = 1
    max_bad_fraction: float = 0.01  # --max-bad-images


class _Pass:
    """The host-side state of one pass: image counts and the step/data times since the last print."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.bad = self.seen = self.done = self.skipped = 0
        self.reset()

    def reset(self) -> None:
        self.time = self.data = 0.0
        self.steps = 0

    def data_done(self) -> float:
        return time.perf_counter() - self.last

    def step_done(self, data_time: float) -> float:
        now = time.perf_counter()
        self.time, self.data, self.steps = self.time + now - self.last, self.data + data_time, self.steps + 1
        self.last = now
        self.done += 1
        return now


def train_one_epoch(parts: TrainParts, loader, plan: EpochPlan, on_step: Optional[StepLine] = None, *,
                    log: Log = _silent, stop: Optional[StopRequest] = None,
                    after_step: Optional[Callable[[int], None]] = None) -> Dict[str, float]:
    """One pass over ``loader``; ``on_step`` gets the step line's figures at each print interval
    (None: nobody prints; the interval's sync and agreement happen all the same), ``log`` the
    skipped-step warnings. ``after_step(step)`` runs after each step (bookkeeping,
    mid-epoch checkpoints). A signal on any rank (``stop``) ends the pass early, at the same
    step on every rank. Returns train loss/acc1/acc5 over all ranks, fps, images, bad_images,
    steps, time_s and ``stop_signal`` (0, or the signal that ended the pass)."""
    parts.model.train()
    for module in parts.frozen:  # --freeze-backbone: BN statistics stay as loaded, dropout off
        module.eval()
    meter = Meter(["loss", "acc1", "acc5"], parts.device)
    steps = len(loader) if plan.max_steps is None else min(len(loader), plan.max_steps)
    speed = Throughput(parts.device, warmup_steps(steps))
    state, stop_signal = _Pass(), 0
    speed.begin()
    for i, (images, target, n_bad) in enumerate(loader if stop is None else stop.batches(loader)):
        state.bad += n_bad
        if images is None:  # every image of the batch was unreadable
            continue
        data_time = state.data_done()
        n = images.shape[0]
        state.seen += n
        step = plan.start_step + i
        micro = None if parts.accum_steps == 1 else Micro.at(step, parts.accum_steps, pass_start=plan.start_step,
                                                              pass_end=plan.start_step + steps)
        if not train_step(parts, images, target, meter=meter, n=n, micro=micro):
            state.skipped += 1  # with accumulation, the last good state is its group's start
            _skipped_step(parts, plan, log, step=step if micro is None else micro.start, skipped=state.skipped)
        speed.step(n)
        now = state.step_done(data_time)
        if i % plan.print_freq == 0 or state.done == steps:
            stop_signal = _print_step(parts, plan, on_step, meter=meter, state=state, step=step, n=n, steps=steps,
                                      now=now, stop=stop) or stop_signal
        elif stop is not None and stop.signum and not dist_ready():
            stop_signal = stop.signum  # one process: stop at once; ranks wait for the print interval
        # Bookkeeping and stops only between optimizer steps: a checkpoint never holds half a group.
        boundary = micro is None or micro.last
        if after_step is not None and boundary:
            after_step(step + 1)
        if (stop_signal and boundary) or state.done >= steps:
            break
    if stop is not None and stop.signum and not stop_signal and not dist_ready():
        stop_signal = stop.signum  # it ended the wait for a batch (StopRequest.batches)
    fps = speed.fps()
    totals = agree(parts.device, nonfinite=False, signum=None, bad=state.bad, seen=state.seen)
    _check_bad(totals.bad, totals.seen, plan.max_bad_fraction, final=True)
    out = meter.averages(reduce=True)
    out.update(fps=fps, images=out.pop("count"), bad_images=totals.bad, steps=state.done,
               stop_signal=stop_signal, time_s=time.perf_counter() - state.start)
    return out


def _skipped_step(parts: TrainParts, plan: EpochPlan, log: Log, *, step: int, skipped: int) -> None:
    if skipped > parts.nan_skips:
        raise NonFiniteLoss(f"non-finite loss at epoch {plan.epoch} step {step} "
                            f"({skipped} such step{'s' * (skipped > 1)})", step)
    log(f"warning: non-finite loss at epoch {plan.epoch} step {step}; step skipped ({skipped}/{parts.nan_skips})")


def _print_step(parts: TrainParts, plan: EpochPlan, on_step: Optional[StepLine], *, meter: Meter, state: _Pass,
                step: int, n: int, steps: int, now: float, stop: Optional[StopRequest]) -> int:
    """The print interval: read the window (one sync); agree with the other ranks, in one
    all-reduce, on a non-finite loss, a stop signal and the unreadable-image count, so that
    every rank raises or stops at the same step; log the step line. Returns the agreed stop
    signal (0: none)."""
    m = meter.read_window()
    local_nonfinite = not parts.check_finite and parts.scaler is None and m["loss"] != m["loss"]
    agreed = agree(parts.device, nonfinite=local_nonfinite, signum=stop.signum if stop else None,
                   bad=state.bad, seen=state.seen)
    if agreed.nonfinite:
        raise NonFiniteLoss(f"non-finite loss in epoch {plan.epoch} before step {step + 1}", None)
    _check_bad(agreed.bad, agreed.seen, plan.max_bad_fraction)
    if stop is not None and agreed.signum and stop.signum is None:
        stop.signum = agreed.signum  # another rank's signal
    avg = meter.averages()
    step_time = state.time / state.steps
    m.update(time=step_time, data=state.data / state.steps)
    avg["time"] = (now - state.start) / state.done
    left = steps - state.done
    if on_step is not None:
        on_step(plan.epoch, step, plan.steps_per_epoch, window=m, avg=avg, lr=parts.optimizer.param_groups[0]["lr"],
                img_s=n * plan.world_size / step_time, eta_s=avg["time"] * left,
                run_eta_s=avg["time"] * (left + plan.epochs_left * plan.steps_per_epoch))
    state.reset()
    return agreed.signum


def _check_bad(bad: int, seen: int, max_fraction: float, *, final: bool = False, split: str = "") -> None:
    """Abort when more than ``max_fraction`` of the images read so far were unreadable."""
    total = bad + seen
    if bad and (final or total >= 64) and bad > max_fraction * total:
        raise DataError(f"{bad} of {total} {split}images read were unreadable (more than --max-bad-images "
                        f"{max_fraction:g}); fix or remove the bad files, or raise --max-bad-images")


def train_step(parts: TrainParts, images, target, *, meter: Optional[Meter] = None, n: int = 0,
               micro: Optional[Micro] = None) -> bool:
    """One optimisation step on a uint8 (or float) batch; adds loss/accuracy sums to ``meter``.
    Returns False (and changes nothing) when ``parts.check_finite`` and the loss is not finite.
    With ``micro`` (gradient accumulation) the batch adds its share to the group's gradients
    (DDP's all-reduce only on the group's last batch) and the group's last batch steps."""
    images = images.to(parts.device, non_blocking=True)
    target = target.to(parts.device, non_blocking=True)
    if micro is not None and micro.first:
        parts.optimizer.zero_grad(set_to_none=True)
    inputs, soft = parts.normalize(images), target
    if parts.train_size is not None:
        inputs = resize_batch(inputs, parts.train_size)
    if parts.mix is not None:  # the loss sees the soft labels, the accuracy the hard ones
        inputs, soft = parts.mix(inputs, target)
    with _grad_sync(parts.model, micro):
        with autocast(parts.device, parts.amp):
            main, loss = parts.loss_fn(parts.criterion, parts.model(inputs), soft)
        # All ranks agree (one tiny all-reduce, CPU only), so they skip or stop at the same step.
        if parts.check_finite and sum_over_ranks(0.0 if torch.isfinite(loss).item() else 1.0, parts.device):
            return False
        if micro is None:
            parts.optimizer.zero_grad(set_to_none=True)
        _backward(parts, loss if micro is None else loss / micro.size)
    if micro is None or micro.last:
        _update(parts)
    if meter is not None:
        correct = accuracy_counts(main.detach(), target)
        meter.update(torch.cat([(loss.detach().float() * n).view(1), correct * 100.0]), n)
    return True


def _grad_sync(model: nn.Module, micro: Optional[Micro]):
    """DDP's ``no_sync`` for a group's inner batches (their gradients stay local until the last)."""
    if micro is None or micro.last or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def _backward(parts: TrainParts, loss: torch.Tensor) -> None:
    (loss if parts.scaler is None else parts.scaler.scale(loss)).backward()


def _update(parts: TrainParts) -> None:
    """The optimizer step on the gradients in place, then the per-step schedule. Clipping sees
    the true gradients: with a grad scaler they are unscaled first (unscale, clip, step)."""
    if parts.clip_grad_norm is not None:
        if parts.scaler is not None:
            parts.scaler.unscale_(parts.optimizer)
        nn.utils.clip_grad_norm_(parts.model.parameters(), parts.clip_grad_norm)  # no host sync
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    parts.scheduler.step()
    if parts.ema is not None:
        parts.ema.after_step(parts.model, parts.scheduler.last_epoch)


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, device: torch.device, amp: AmpSettings, normalize: Normalize,
             on_step: Optional[StepLine] = None, print_freq: int = 0,
             max_bad_fraction: float = 1.0, stop: Optional[StopRequest] = None, tta: str = "none",
             num_classes: int = 0) -> Dict[str, float]:
    """Exact over ranks: each rank sees a disjoint shard (EvalSampler); sums are all-reduced.
    The loss is plain cross-entropy (no label smoothing), as timm and torchvision report it.
    ``model`` must be the bare module (DDP's forward would be a collective per batch).
    With ``on_step`` (rank 0's): the ``Test: [ i/N]`` line's figures every ``print_freq`` batches
    (rank 0's shard so far; the one sync of reading the sums), and last the exact global figures.
    Unreadable images are counted (``bad_images``) under the training's rule (``max_bad_fraction``:
    --max-bad-images); no readable image at all is a ``DataError``, never an Acc@1 of nan. In one
    process a signal (``stop``) that arrives while a batch is awaited ends the evaluation at once:
    ``{"stop_signal": signum}`` and nothing else. ``tta="flip"``: the logits are the mean of the
    image's and its mirror's. With ``num_classes`` the result also holds ``confusion`` (true x
    predicted counts, int64 on the CPU), counted on the device and reduced over the ranks once, at
    the end."""
    model.eval()
    criterion = nn.CrossEntropyLoss()
    meter = Meter(["loss", "acc1", "acc5"], device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device) if num_classes else None
    printing = on_step is not None and print_freq > 0
    steps, state, bad = len(loader), _Pass(), 0
    for i, (images, target, n_bad) in enumerate(loader if stop is None else stop.batches(loader)):
        bad += n_bad
        if images is None:
            continue
        data_time = state.data_done()
        images = images.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        output = tta_logits(model, normalize(images), device=device, amp=amp, tta=tta)
        loss = criterion(output.float(), target)
        n = images.shape[0]
        meter.update(torch.cat([(loss * n).view(1), accuracy_counts(output, target) * 100.0]), n)
        if confusion is not None:
            confusion += torch.bincount(target * num_classes + output.argmax(1), minlength=num_classes ** 2)
        now = state.step_done(data_time)
        if printing and i % print_freq == 0:
            _print_test(on_step, meter, state, step=i, steps=steps, now=now)
    if stop is not None and stop.signum and not dist_ready():
        return {"stop_signal": stop.signum}
    out = meter.averages(reduce=True)
    out["images"] = out.pop("count")
    out["bad_images"] = int(sum_over_ranks(bad, device))
    if not out["images"]:
        raise DataError(f"none of the {out['bad_images']} validation images could be read; fix or remove the bad "
                        "files (or train without validation: --no-val)")
    _check_bad(out["bad_images"], int(out["images"]), max_bad_fraction, final=True, split="validation ")
    if confusion is not None:
        out["confusion"] = counts_over_ranks(confusion, device).cpu().view(num_classes, num_classes)
    if on_step is not None:
        per_step = (time.perf_counter() - state.start) / max(state.done, 1)
        final = dict(out, time=per_step)
        on_step(steps, steps, window=final, avg=final, eta_s=0.0)
    return out


def tta_logits(model: nn.Module, images: torch.Tensor, *, device: torch.device, amp: AmpSettings,
               tta: str = "none") -> torch.Tensor:
    """``model(images)`` (normalised images); ``tta="flip"``: the mean of its logits and those of
    the horizontally mirrored images, in float32."""
    with autocast(device, amp):
        output = model(images)
        if tta == "flip":
            output = (output.float() + model(images.flip(3)).float()) / 2
    return output


def _print_test(on_step: StepLine, meter: Meter, state: _Pass, *, step: int, steps: int, now: float) -> None:
    m = meter.read_window()
    m["time"] = state.time / state.steps
    avg = dict(meter.averages(), time=(now - state.start) / state.done)
    on_step(step, steps, window=m, avg=avg, eta_s=avg["time"] * (steps - state.done))
    state.reset()
