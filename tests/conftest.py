"""Shared fixtures: tiny ImageFolder trees, the test-only tinynet, a tiny demo cache; and for
the subprocess tests, an environment that knows the test nets and subprocesses started ahead."""

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import tinynet

ROOT = Path(__file__).resolve().parent.parent
# The file indexes of the test trees (classify.data.index) go to a temp folder, not ~/.cache;
# subprocesses inherit it.
os.environ.setdefault("CLASSIFY_INDEX_CACHE", tempfile.mkdtemp(prefix="classify-index-"))
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


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches the network: torch.hub's download fails as on an offline machine (the
    tests of the download path replace it with their own fetcher)."""
    import urllib.error

    import torch.hub

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network in the tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


def start_main(*args, env=None, cwd=None) -> "Background":
    """``tests/run_main.py ARGS`` started in a subprocess (collect it with ``.result()``)."""
    # one thread per test process: tiny nets, and no oversubscription of a small CI machine
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env or {}))
    return Background([sys.executable, ROOT / "tests" / "run_main.py", *args], env=full_env, cwd=cwd or ROOT)


@pytest.fixture
def run_main():
    """Run ``tests/run_main.py ARGS`` in a subprocess; returns CompletedProcess (text)."""

    def _run(*args, timeout=300, env=None, cwd=None):
        return start_main(*args, env=env, cwd=cwd).result(timeout)

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


@pytest.fixture(scope="session")
def subprocess_env(tmp_path_factory):
    """Environment for subprocesses (jobs, bash launchers): every Python process started with it
    knows the test nets (tests/subprocess_hook.py, through a sitecustomize.py on PYTHONPATH);
    one OpenMP thread per process, unbuffered output."""
    hook = tmp_path_factory.mktemp("hook")
    (hook / "sitecustomize.py").write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                                           "from tests import subprocess_hook\nsubprocess_hook.install()\n")
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


class Background:
    """A subprocess started now, collected later by ``result()``. Output goes to files (no pipe
    can fill up while nobody reads it); it runs in its own process group, killed as a whole
    on a timeout or by ``kill()``."""

    def __init__(self, cmd, env=None, cwd=ROOT):
        self.cmd = [str(c) for c in cmd]
        self._files = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(self.cmd, stdout=self._files[0], stderr=self._files[1], text=True,
                                     env=env, cwd=cwd, start_new_session=True)
        self._result = None

    def result(self, timeout=300) -> subprocess.CompletedProcess:
        if self._result is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"{' '.join(self.cmd)} still running after {timeout} s:\n{self._read(1)[-3000:]}")
            except BaseException:  # e.g. Ctrl-C: leave nothing running
                self.kill()
                raise
            self._result = subprocess.CompletedProcess(self.cmd, self.proc.returncode, self._read(0), self._read(1))
        return self._result

    def _read(self, i):
        self._files[i].seek(0)
        return self._files[i].read()

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_ahead(request, *names):
    """Instantiate now those of the module-scoped fixtures ``names`` that this module's
    selected tests use. Each starts a subprocess without waiting for it (``Background``), so
    they run side by side, and beside the in-process tests before the ones that collect them:
    a small machine's second core works instead of idling through process start-ups."""
    used = set()
    for item in request.session.items:
        if getattr(item, "module", None) is request.module:
            used.update(item.fixturenames)
    for name in names:
        if name in used:
            request.getfixturevalue(name)
