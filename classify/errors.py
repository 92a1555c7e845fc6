"""Every exception the engine raises on purpose, and the exit code main.py turns it into.

A ``UserError`` is a mistake the user can fix: one line that names the problem and the
fix, never a traceback. ``Interrupted`` and ``NonFiniteLoss`` end a run on purpose, after
the checkpoint they mention has been written.
"""

from typing import Optional

__all__ = ["UserError", "DataError", "CheckpointError", "UnsafeCheckpoint", "Interrupted", "NonFiniteLoss"]


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing data, ...). Exit code 2."""

    exit_code = 2


class DataError(UserError):
    """The data is unusable (missing split, empty class, too many bad images)."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model."""


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint that holds objects other than tensors and plain values (it could run code)."""


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
