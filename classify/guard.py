"""Stopping cleanly: SIGTERM/SIGINT (what schedulers send before preemption).

A signal only sets a flag; the loop finishes the current step, the run writes a checkpoint
and stops. With several ranks the flag is agreed on at the print interval, where the loop
reads its metrics anyway, in the same all-reduce as the non-finite-loss check
(``agree``), so all ranks stop at the same step and no collective is left waiting.
"""

import signal
from typing import Optional, Tuple

import torch
import torch.distributed as dist

from .devices import collective_device, dist_ready

__all__ = ["StopRequest", "agree"]


class StopRequest:
    """Context manager: installs the handlers, and holds ``signum`` once a signal arrived."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {}

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


def agree(device: torch.device, *, nonfinite: bool, signum: Optional[int]) -> Tuple[bool, int]:
    """(any rank saw a non-finite loss, the largest signal number any rank received, 0 for none):
    one all-reduce for both; without a process group, this rank's own values."""
    if not dist_ready():
        return nonfinite, signum or 0
    flags = torch.tensor([int(nonfinite), signum or 0], dtype=torch.int32, device=collective_device(device))
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    any_nonfinite, any_signal = flags.tolist()
    return bool(any_nonfinite), int(any_signal)
