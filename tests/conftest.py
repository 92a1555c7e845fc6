"""Shared fixtures: tiny ImageFolder trees, the test-only tinynet, a tiny demo cache."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import tinynet

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


def write_image_folder(root: Path, train_per_class: int = 12, val_per_class: int = 7, size: int = 40,
                       classes=COLOURS) -> Path:
    """A learnable 3-class tree: the class is the dominant colour, plus noise."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                noise = rng.integers(-60, 60, (size, size, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("imagefolder"))


@pytest.fixture(autouse=True)
def _tinynet():
    tinynet.register()
    yield


@pytest.fixture
def run_main():
    """Run ``tests/run_main.py ARGS`` in a subprocess; returns CompletedProcess (text)."""

    def _run(*args, timeout=300, env=None, cwd=None):
        # one thread per test process: tiny nets, and no oversubscription of a small CI machine
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env or {}))
        return subprocess.run([sys.executable, str(ROOT / "tests" / "run_main.py"), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT)

    return _run


def train_in_process(capsys, *argv) -> str:
    """Run main.main(argv) in this process; assert success and return its stdout."""
    import main

    code = main.main([str(a) for a in argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def tiny_args(data, out, *extra):
    """tinynet on ``data`` with a batch of 8, no loader workers, outputs in ``out``."""
    return [data, "-a", "tinynet", "-b", "8", "--workers", "0", "-p", "2", "--output-dir", out, *extra]
