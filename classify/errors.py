"""Every exception the engine raises on purpose, and the exit code main.py turns it into.

A ``UserError`` is a mistake the user can fix: one line that names the problem and the
fix, never a traceback. ``Interrupted`` and ``NonFiniteLoss`` end a run on purpose, after
the checkpoint they mention has been written.
"""

import errno
import os
from typing import Optional

__all__ = ["UserError", "DataError", "CheckpointError", "UnsafeCheckpoint", "StorageError", "Interrupted",
           "NonFiniteLoss", "os_error_text"]


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing data, ...). Exit code 2."""

    exit_code = 2


class DataError(UserError):
    """The data is unusable (missing split, empty class, too many bad images)."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model."""


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint that holds objects other than tensors and plain values (it could run code)."""


class StorageError(UserError):
    """A write that the filesystem refused (full, read-only, not permitted). Exit code 1: the
    user frees space or picks another place, nothing in the command line is wrong."""

    exit_code = 1


# What the OS says about a path, in words that name the fix (os_error_text).
_OS_ERROR_TEXT = {
    errno.ENOSPC: "no space left on the device holding '{0}'",
    errno.EDQUOT: "disk quota exceeded writing '{0}'",
    errno.EROFS: "'{0}' is on a read-only filesystem",
    errno.EACCES: "permission denied: '{0}'",
    errno.EPERM: "operation not permitted: '{0}'",
    errno.ENOTDIR: "'{0}': a part of this path is a file, not a folder",
    errno.EEXIST: "'{0}' already exists and is not a folder",
    errno.EISDIR: "'{0}' is a folder, not a file",
    errno.ENOENT: "'{0}' does not exist",
    errno.ELOOP: "'{0}': too many levels of symbolic links (a link loop)",
    errno.ENAMETOOLONG: "'{0}': file name too long",
}


def os_error_text(error: OSError) -> str:
    """One line for an OS error about a user's path: the path and what is wrong with it."""
    name = os.fsdecode(error.filename) if error.filename is not None else None
    if name is None:  # a write to an open file (a full disk): what the OS said
        return (error.strerror or str(error)).lower()
    text = _OS_ERROR_TEXT.get(error.errno, f"{error.strerror or error}: '{{0}}'")
    return text.format(name)


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
