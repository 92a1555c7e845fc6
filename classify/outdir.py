"""The output dir's policy: may a run use this folder (``prepare_output_dir``: checks, creates
nothing), and creating it when the run starts writing (``create_output_dir``). Used by the
lock (``classify.lock``), the run (``classify.run``) and the pre-flight (``classify.check``).
Standard library and ``classify.errors`` only.
"""

import os
import time
from pathlib import Path

from .errors import UserError

__all__ = ["LOCK_NAME", "prepare_output_dir", "create_output_dir"]

LOCK_NAME = ".classify.lock"  # the output dir's lock (classify.lock): one job per folder; --fresh never moves it


def prepare_output_dir(path: Path) -> Path:
    """Check that ``path`` can be the output dir, creating nothing (an error found before the
    run starts writing leaves no empty folder behind): a folder we may write into, or one we
    may create. One line if not; returns the absolute path."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"output dir '{path}' is a file; pass --output-dir to a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"output dir '{path}' is not writable ('{existing}' is a file); "
                        "pass --output-dir to a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output dir '{path}' is not writable (no write access to '{existing}'); "
                        "pass --output-dir to a writable folder")
    return path


def create_output_dir(path: Path) -> None:
    """Create ``path`` (rank 0, when the run starts writing) and check that it takes a file."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test.{time.time_ns()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UserError(f"output dir '{path}' is not writable ({e.strerror}); "
                        "pass --output-dir to a writable folder") from None
