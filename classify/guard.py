"""Stopping cleanly: SIGTERM/SIGINT (what schedulers send before preemption) and
non-finite losses.

A signal only sets a flag; the loop finishes the current step, writes a checkpoint and
stops. With several ranks the flag is agreed on with one all-reduce every ``every``
steps (at the print interval, where the loop syncs anyway), so all ranks stop at the
same step and no collective is left waiting.
"""

import signal
from typing import Optional

import torch
import torch.distributed as dist

__all__ = ["StopRequest", "Interrupted", "NonFiniteLoss"]


class Interrupted(Exception):
    """Training stopped by a signal after saving; exit code 128 + signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class NonFiniteLoss(Exception):
    """The loss became NaN/inf (``--nan-policy``); exit code 3. ``step`` is set when the model
    still holds the last good weights (the bad step was not applied), else None."""

    exit_code = 3

    def __init__(self, message: str, step: Optional[int]):
        super().__init__(message)
        self.step = step


class StopRequest:
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, device: torch.device, every: int = 1):
        self.device, self.every = device, max(1, every)
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

    def requested(self, step: int) -> bool:
        """True when a signal arrived here or on any rank (checked every ``every`` steps with ranks)."""
        if not (dist.is_available() and dist.is_initialized()):
            return self.signum is not None
        if step % self.every:
            return False
        on = self.device if dist.get_backend() != "gloo" else torch.device("cpu")
        flag = torch.tensor([self.signum or 0], dtype=torch.int32, device=on)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.signum is None:
            self.signum = int(flag.item())
        return bool(flag.item())
