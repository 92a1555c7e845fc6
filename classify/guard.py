"""Stopping cleanly: SIGTERM/SIGINT (what schedulers send before preemption).

A signal only sets a flag; the loop finishes the current step, the run writes a checkpoint
and stops. In one process a signal that arrives while the loop waits for its next batch ends
the wait at once (``StopRequest.batches``): a read that blocks (a stalled ``pipe:`` shard)
never holds a stop. With several ranks the flag is agreed on at the print interval, where the loop
reads its metrics anyway, in the same all-reduce as the non-finite-loss check
(``agree``), so all ranks stop at the same step and no collective is left waiting.
"""

import signal
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from .devices import collective_device, dist_ready

__all__ = ["StopRequest", "Agreed", "agree"]


class _StopWaiting(BaseException):
    """Raised by the handler into a wait for data (a BaseException: no reader's ``except
    Exception`` swallows it)."""


class StopRequest:
    """Context manager: installs the handlers, and holds ``signum`` once a signal arrived."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {}
        self._waiting = False  # in StopRequest.batches, waiting for the next batch

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum
        if self._waiting:
            self._waiting = False
            raise _StopWaiting

    def batches(self, loader):
        """The batches of ``loader``; in one process the iteration ends as soon as a signal has
        arrived and the next batch is not there yet (the reader is abandoned and its generators
        closed: a ``pipe:`` command is ended). With several ranks a stop waits for the print
        interval, where they agree on it (``agree``)."""
        interruptible = not dist_ready()
        it = iter(loader)
        try:
            while not (interruptible and self.signum):
                self._waiting = interruptible
                batch = next(it)
                self._waiting = False
                yield batch
        except (StopIteration, _StopWaiting):
            return
        finally:
            self._waiting = False


@dataclass(frozen=True)
class Agreed:
    """What every rank learns at a print interval."""

    nonfinite: bool  # some rank saw a non-finite loss
    signum: int  # a signal some rank received (SIGTERM before SIGINT), 0 for none
    bad: int  # unreadable images so far, all ranks
    seen: int  # images read so far, all ranks


def agree(device: torch.device, *, nonfinite: bool, signum: Optional[int], bad: int = 0, seen: int = 0) -> Agreed:
    """One all-reduce (a sum) for the non-finite flag, the signals and the image counts; without
    a process group, this rank's own values."""
    values = [int(nonfinite), int(signum == signal.SIGTERM), int(signum == signal.SIGINT), bad, seen]
    if dist_ready():
        flags = torch.tensor(values, dtype=torch.float64 if device.type != "npu" else torch.float32,
                             device=collective_device(device))
        dist.all_reduce(flags, op=dist.ReduceOp.SUM)
        values = [int(v) for v in flags.tolist()]
    any_nonfinite, terms, ints, bad, seen = values
    signum = signal.SIGTERM if terms else (signal.SIGINT if ints else 0)
    return Agreed(bool(any_nonfinite), int(signum), bad, seen)
