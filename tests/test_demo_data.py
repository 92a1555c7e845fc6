"""The built-in demo data set: deterministic, ImageFolder layout, cached once, race-safe."""

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from classify.data import demo

REPO = Path(__file__).resolve().parents[1]
TINY = {"train_per_class": 3, "val_per_class": 2, "size": 32, "num_classes": 4}


def _tree(root):
    """{relative path: bytes} of every file under root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_complete(root, tiny=TINY):
    classes = list(demo.CLASSES[:tiny["num_classes"]])
    for split, per_class in (("train", tiny["train_per_class"]), ("val", tiny["val_per_class"])):
        assert sorted(d.name for d in (root / split).iterdir()) == classes
        for name in classes:
            assert len(list((root / split / name).glob("*.jpg"))) == per_class


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = _tree(demo.make_demo_data(tmp_path / "a", seed=3, **TINY))
    b = _tree(demo.make_demo_data(tmp_path / "b", seed=3, **TINY))
    c = _tree(demo.make_demo_data(tmp_path / "c", seed=4, **TINY))
    assert len(a) == 4 * (3 + 2)
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_imagefolder_layout(tmp_path):
    from torchvision.datasets import ImageFolder

    root = demo.make_demo_data(tmp_path, **TINY)
    train, val = ImageFolder(root / "train"), ImageFolder(root / "val")
    assert train.classes == val.classes == list(demo.CLASSES[:4])  # label i is CLASSES[i]
    assert (len(train), len(val)) == (12, 8)
    img, label = train[0]
    assert img.size == (32, 32) and img.mode == "RGB" and label == 0


def test_default_root_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CLASSIFY_DEMO_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert demo.default_demo_root() == tmp_path / "classify" / f"demo-v{demo.DEMO_VERSION}"
    monkeypatch.setenv("CLASSIFY_DEMO_DIR", str(tmp_path / "mine"))
    assert demo.default_demo_root() == tmp_path / "mine"


def test_ensure_creates_once_then_reuses(monkeypatch, tmp_path):
    monkeypatch.setenv("CLASSIFY_DEMO_DIR", str(tmp_path / "demo"))
    root = demo.ensure_demo_data(**TINY)
    assert root == tmp_path / "demo"
    _assert_complete(root)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("demo data regenerated")

    monkeypatch.setattr(demo, "make_demo_data", must_not_run)
    assert demo.ensure_demo_data(**TINY) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert os.listdir(tmp_path) == ["demo"]  # no temp dir left behind


def test_ensure_refuses_foreign_dir_but_takes_empty_one(tmp_path):
    foreign = tmp_path / "foreign"
    (foreign / "train").mkdir(parents=True)  # e.g. a half-written tree: no marker
    with pytest.raises(RuntimeError, match="not a complete demo set"):
        demo.ensure_demo_data(foreign, **TINY)
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_complete(demo.ensure_demo_data(empty, **TINY))


_BARRIER = None


def _init_worker(barrier):
    global _BARRIER
    _BARRIER = barrier


def _ensure_after_barrier(root):
    _BARRIER.wait(timeout=60)  # all processes start generating at the same moment
    return str(demo.ensure_demo_data(root, **TINY))


def test_concurrent_processes_get_one_complete_tree(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    root = tmp_path / "demo"
    n = 3
    with ctx.Pool(n, initializer=_init_worker, initargs=(ctx.Barrier(n),)) as pool:
        results = pool.map(_ensure_after_barrier, [root] * n, chunksize=1)
    assert results == [str(root)] * n
    _assert_complete(root)
    assert os.listdir(tmp_path) == ["demo"]  # losers removed their temp trees
    images = {k: v for k, v in _tree(root).items() if k.endswith(".jpg")}
    assert images == _tree(demo.make_demo_data(tmp_path / "ref", **TINY))


def test_cli(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "tools" / "make_demo_data.py"), str(out), "--seed", "1",
           "--train-per-class", "2", "--val-per-class", "1", "--size", "32"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    n = len(demo.CLASSES)
    assert proc.stdout.strip().splitlines() == [
        f"demo data: {n} classes, {2 * n} train and {n} val images in {out}"]
    assert (out / "train" / "circle" / "circle_0001.jpg").is_file()
    assert (out / "val" / "star" / "star_0000.jpg").is_file()
