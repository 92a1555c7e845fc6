"""What a pre-resized data set records about its stored images (issue #24, "pre-resized data").

``tools/resize_dataset.py SRC DST --max-side N`` writes ``DST/resize.json`` and
``tools/make_shards.py ... --max-side N`` writes ``max_side`` into the shards' ``index.json``: no
stored image has a longer side above N. A run whose crop is larger than that upscales every image;
``stored_max_side`` finds the record and ``larger_crop_note`` says so in one line.
"""

import json
import os
from pathlib import Path
from typing import Optional, Tuple

__all__ = ["RESIZE_NAME", "stored_max_side", "larger_crop_note"]

RESIZE_NAME = "resize.json"  # written last by tools/resize_dataset.py: {"max_side": N, "quality": Q, ...}
_SHARD_INDEX = "index.json"  # classify.data.shards.INDEX_NAME


def _read(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stored_max_side(root: Optional[str]) -> Optional[Tuple[int, str]]:
    """(N, the file that records it) for a pre-resized folder (its root, or the root above a split
    folder) or shard folder; None when nothing records a maximum (or ``root`` is not a local folder)."""
    if not root or str(root).startswith("pipe:"):
        return None
    folder = Path(os.path.expanduser(str(root)))
    if not folder.is_dir():
        folder = folder.parent  # a shard pattern: index.json beside the shards
    for candidate in (folder / RESIZE_NAME, folder.parent / RESIZE_NAME, folder / _SHARD_INDEX):
        record = _read(candidate) if candidate.is_file() else None
        if record and isinstance(record.get("max_side"), int) and record["max_side"] > 0:
            return record["max_side"], str(candidate)
    return None


def larger_crop_note(root: Optional[str], crop: int) -> Optional[str]:
    """One line when ``crop`` (the largest the run asks for) exceeds the stored images' longer side."""
    found = stored_max_side(root)
    if found is None or crop <= found[0]:
        return None
    side, where = found
    return (f"warning: the images under '{root}' were stored with their longer side at most {side} px ({where}); "
            f"a {crop} px crop upscales them: re-make the data with --max-side {crop} or more, or crop at most {side}")
