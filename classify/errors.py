"""User-facing errors: one line that names the problem and the fix, never a traceback."""

__all__ = ["UserError", "DataError", "CheckpointError"]


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing data, ...). Exit code 2."""

    exit_code = 2


class DataError(UserError):
    """The data is unusable (missing split, empty class, too many bad images)."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model."""
