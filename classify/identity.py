"""A run's identity: what makes two runs the same run, so that one may continue the other.

The fields: data root (and the data index's fingerprint once there is one), arch, recipe,
number of classes, image size, global batch; plus a run id (``new_run_id``) the run adds.
Recorded in ``config.json`` (``identity``) and in every checkpoint; compared by
``classify.rundir.claim`` (may a run use an output dir) and by
``classify.checkpoint.CheckpointManager`` (may a checkpoint be continued). Standard library only:
both of them import it, neither imports the other for it.
"""

import os
import secrets
import time
from typing import Dict, List, Optional

__all__ = ["IDENTITY_KEYS", "identity", "new_run_id", "differences"]

IDENTITY_KEYS = ("data_root", "index_fingerprint", "arch", "recipe", "num_classes", "image_size", "global_batch")
_NAMES = {"data_root": "data root", "index_fingerprint": "data index", "arch": "arch", "recipe": "recipe",
          "num_classes": "classes", "image_size": "image size", "global_batch": "global batch"}


def identity(*, data_root: Optional[str], arch: str, recipe: str, num_classes: int, image_size: int,
             global_batch: int, index_fingerprint: Optional[str] = None) -> Dict:
    """The identity fields of a run (``run_id`` is added by the caller)."""
    root = data_root if data_root in (None, "dummy") else os.path.realpath(os.path.expanduser(data_root))
    return {"data_root": root, "index_fingerprint": index_fingerprint, "arch": arch, "recipe": recipe,
            "num_classes": int(num_classes), "image_size": int(image_size), "global_batch": int(global_batch)}


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def differences(held: Dict, new: Dict) -> List[str]:
    """``name old -> new`` for each identity field known on both sides that differs."""
    out = []
    for key in IDENTITY_KEYS:
        a, b = held.get(key), new.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"{_NAMES[key]} {a} -> {b}" if key != "data_root" else f"{_NAMES[key]} '{a}' -> '{b}'")
    return out
