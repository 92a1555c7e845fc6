"""The built-in demo data set and the bench's photo set: deterministic, ImageFolder layout,
cached once, race-safe (one shared atomic publish)."""

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from classify.data import demo, photos
from classify.errors import DataError, UserError
from tests.conftest import tool_env

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
    with pytest.raises(DataError, match="not a complete demo set"):
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


RACERS = 3


@pytest.fixture(scope="module")
def racers():
    """``RACERS`` spawned processes behind one barrier, shared by this module's races (each
    spawn imports torch: once for the module, not once per race)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(RACERS, initializer=_init_worker, initargs=(ctx.Barrier(RACERS),)) as pool:
        yield pool


def _race(pool, fn, root):
    """``fn(root)`` in every process of ``pool``, started at the same moment (the barrier: a
    process waiting there takes no other task, so each runs one); their results."""
    return pool.map(fn, [root] * RACERS, chunksize=1)


@pytest.mark.slow
def test_concurrent_processes_get_one_complete_tree(tmp_path, racers):
    root = tmp_path / "demo"
    assert _race(racers, _ensure_after_barrier, root) == [str(root)] * 3
    _assert_complete(root)
    assert os.listdir(tmp_path) == ["demo"]  # losers removed their temp trees
    images = {k: v for k, v in _tree(root).items() if k.endswith(".jpg")}
    assert images == _tree(demo.make_demo_data(tmp_path / "ref", **TINY))


def test_cli(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "tools" / "make_demo_data.py"), str(out), "--seed", "1",
           "--train-per-class", "2", "--val-per-class", "1", "--size", "32"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=tool_env())
    assert proc.returncode == 0, proc.stderr
    n = len(demo.CLASSES)
    assert proc.stdout.strip().splitlines() == [
        f"demo data: {n} classes, {2 * n} train and {n} val images in {out}"]
    assert (out / "train" / "circle" / "circle_0001.jpg").is_file()
    assert (out / "val" / "star" / "star_0000.jpg").is_file()


# ---------------------------------------------------------------- the shared atomic publish


def test_publish_leaves_nothing_when_generation_fails(tmp_path):
    root = tmp_path / "set"

    def write(tmp):
        (tmp / "train").mkdir()
        (tmp / "train" / "half.jpg").write_bytes(b"...")
        raise KeyboardInterrupt  # e.g. Ctrl-C half-way

    with pytest.raises(KeyboardInterrupt):
        demo.publish_atomically(root, write, lambda r: True)
    assert os.listdir(tmp_path) == []  # no half-written tree, no temp tree


def test_publish_refuses_to_lose_to_an_unfinished_tree(tmp_path):
    root = tmp_path / "set"
    (root / "other").mkdir(parents=True)
    with pytest.raises(OSError):
        demo.publish_atomically(root, lambda tmp: (tmp / "x").write_text("x"), lambda r: (r / "x").is_file())
    assert os.listdir(tmp_path) == ["set"] and os.listdir(root) == ["other"]


def test_demo_and_photos_share_one_publish():
    assert photos.publish_atomically is demo.publish_atomically


# ---------------------------------------------------------------- photos (tools/bench.py --data photos)


def test_make_photos_writes_photo_sized_jpegs(tmp_path):
    root = photos.make_photos(tmp_path / "photos", count=3, classes=2)
    files = sorted((root / "train").rglob("*.jpg"))
    assert len(files) == 3 and {f.parent.name for f in files} == {"class_0", "class_1"}
    for f in files:
        with Image.open(f) as img:
            assert img.format == "JPEG" and max(img.size) == 500 and 330 <= min(img.size) <= 500
    again = photos.make_photos(tmp_path / "again", count=1, classes=2)
    assert (again / "train" / "class_0" / "photo_0000.jpg").read_bytes() == files[0].read_bytes()


def test_photos_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert photos.default_photos_root(7) == tmp_path / "classify" / f"bench-photos-v{photos.PHOTOS_VERSION}-7"


def test_ensure_photos_creates_once_then_reuses(monkeypatch, tmp_path):
    root = photos.ensure_photos(tmp_path / "photos", 2)
    assert root == tmp_path / "photos" and len(list(root.glob("train/*/*.jpg"))) == 2
    monkeypatch.setattr(photos, "make_photos", lambda *a, **k: pytest.fail("photos regenerated"))
    assert photos.ensure_photos(root, 2) == root and photos.ensure_photos(root, 1) == root
    assert os.listdir(tmp_path) == ["photos"]  # no temp dir left behind


def test_ensure_photos_refuses_foreign_dir_but_takes_empty_one(tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not photos")
    with pytest.raises(UserError, match="is not empty and holds fewer than 2 photos"):
        photos.ensure_photos(tmp_path / "foreign", 2)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        photos.ensure_photos(tmp_path / "file", 2)
    (tmp_path / "empty").mkdir()
    assert len(list(photos.ensure_photos(tmp_path / "empty", 1).glob("train/*/*.jpg"))) == 1


def _photos_after_barrier(root):
    _BARRIER.wait(timeout=60)
    return str(photos.ensure_photos(root, 2))


@pytest.mark.slow
def test_concurrent_processes_get_one_photo_set(tmp_path, racers):
    root = tmp_path / "photos"
    assert _race(racers, _photos_after_barrier, root) == [str(root)] * 3
    assert os.listdir(tmp_path) == ["photos"]  # losers removed their temp trees
    assert _tree(root) == _tree(photos.make_photos(tmp_path / "ref", 2))
