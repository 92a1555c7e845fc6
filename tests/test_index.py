"""The file index (classify.data.index): a flat sample table, built once, cached, shared."""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

import main
from classify.resolve import build_config
from classify.data import index as index_mod
from classify.data.folder import SafeImageFolder
from classify.data.index import SampleTable, index_path, load_table
from classify.errors import DataError
from tests.conftest import ROOT, Background


def _tree(root: Path, per_class=3, classes=("b", "a", "c")) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / c / f"{i:02d}.jpg").write_bytes(b"")
    return root


def _count_scans(monkeypatch):
    calls = []
    real = index_mod.scan_split

    def counted(split):
        calls.append(split)
        return real(split)

    monkeypatch.setattr(index_mod, "scan_split", counted)
    return calls


def _visible(path):
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


class _VisibleImageFolder(ImageFolder):
    """What the data loader used before the index: torchvision's scan, hidden entries left out."""

    def find_classes(self, directory):
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
        return classes, {c: i for i, c in enumerate(classes)}


def test_the_table_is_flat_and_matches_imagefolder(tmp_path):
    split = _tree(tmp_path / "train")
    (split / "a" / "nested").mkdir()
    (split / "a" / "nested" / "x.JPEG").write_bytes(b"")
    (split / "a" / ".hidden.jpg").write_bytes(b"")
    (split / "a" / "notes.txt").write_text("x")
    (split / ".cache").mkdir()
    data = SafeImageFolder(split, index_cache=tmp_path / "idx")
    # flat storage: numpy arrays, no Python list of per-sample tuples anywhere in the object
    assert isinstance(data.table, SampleTable)
    assert {type(v) for v in vars(data.table).values()} == {str, np.ndarray}
    assert not any(isinstance(v, (list, tuple)) and len(v) == len(data) for v in vars(data).values())
    reference = _VisibleImageFolder(str(split), is_valid_file=_visible)
    assert data.classes == reference.classes == ["a", "b", "c"]
    assert [data.table[i] for i in range(len(data))] == reference.samples  # same samples, same order


def test_built_once_reused_and_rebuilt_when_a_class_changes(tmp_path, monkeypatch, capsys):
    split, cache = _tree(tmp_path / "train"), tmp_path / "idx"
    scans = _count_scans(monkeypatch)
    table, classes = load_table(split, cache)
    assert "indexed into" in capsys.readouterr().out and len(scans) == 1
    again, classes2 = load_table(split, cache)
    assert len(scans) == 1 and classes2 == classes and np.array_equal(again.buffer, table.buffer)
    assert capsys.readouterr().out == ""  # a warm start says nothing
    time.sleep(0.01)
    (split / "b" / "new.jpg").write_bytes(b"")
    changed, _ = load_table(split, cache)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(scans) == 2 and len(changed) == len(table) + 1
    assert len(out) == 1 and "is out of date: 'b' changed; rebuilt it" in out[0]
    (split / "d").mkdir()
    (split / "d" / "0.png").write_bytes(b"")
    assert load_table(split, cache)[1] == ["a", "b", "c", "d"] and len(scans) == 3


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04garbage", None])
def test_a_corrupt_index_is_rebuilt(tmp_path, monkeypatch, capsys, damage):
    split, cache = _tree(tmp_path / "train"), tmp_path / "idx"
    table, _ = load_table(split, cache)
    path = index_path(split, cache)
    data = path.read_bytes()
    path.write_bytes(damage if damage is not None else data[: len(data) // 2])
    capsys.readouterr()
    scans = _count_scans(monkeypatch)
    again, _ = load_table(split, cache)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(scans) == 1 and np.array_equal(again.labels, table.labels)
    assert len(out) == 1 and "is not a readable index" in out[0] and "rebuilt it" in out[0]
    assert load_table(split, cache) and len(scans) == 1  # and the rebuilt one is read again


def test_no_index_cache_scans_and_writes_nothing(tmp_path, monkeypatch):
    split = _tree(tmp_path / "train")
    scans = _count_scans(monkeypatch)
    load_table(split, None)
    load_table(split, None)
    assert len(scans) == 2 and not (tmp_path / "idx").exists()


def test_errors_are_todays(tmp_path):
    split = _tree(tmp_path / "train")
    (split / "empty").mkdir()
    (split / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"class folder '.*empty' holds no images; add images or remove it"):
        SafeImageFolder(split, index_cache=tmp_path / "idx")
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(DataError, match="no class folders in"):
        SafeImageFolder(bare, index_cache=tmp_path / "idx")


def _config(*flags):
    return build_config(main.get_args_parser().parse_args(["--dummy", *flags])).data.index_cache


def test_flags(tmp_path, monkeypatch):
    monkeypatch.delenv("CLASSIFY_INDEX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _config() == _config("--cache-dataset") == str(tmp_path / "classify" / "index")
    assert _config("--index-cache", str(tmp_path / "x")) == str(tmp_path / "x")
    assert _config("--no-index-cache") is None
    with pytest.raises(Exception, match="contradicts"):
        _config("--no-index-cache", "--cache-dataset")


# Two real processes on one tree: the one that takes the lock scans (slowly here), the other
# waits for it and reads its index. A scanner killed mid-scan leaves the other to scan itself.
_WORKER = """
import os, sys, time
sys.path.insert(0, {root!r})
from classify.data import index
real = index.scan_split
def slow(split):
    open(sys.argv[3], "w").close()  # "I hold the lock and scan"
    time.sleep(float(sys.argv[4]))
    return real(split)
index.scan_split = slow
table, classes = index.load_table(sys.argv[1], sys.argv[2])
print("read", len(table), len(classes))
"""


def _worker(tmp_path, split, cache, name, sleep):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(root=str(ROOT)))
    return Background([sys.executable, script, split, cache, tmp_path / name, sleep],
                      env=dict(os.environ, OMP_NUM_THREADS="1"))


def _wait_for(path: Path, timeout=120):
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_processes_share_one_scan(tmp_path):
    split, cache = _tree(tmp_path / "train", per_class=5), tmp_path / "idx"
    first = _worker(tmp_path, split, cache, "scanning-1", 2)
    _wait_for(tmp_path / "scanning-1")  # the first holds the lock; the second has to wait for it
    second = _worker(tmp_path, split, cache, "scanning-2", 0)
    results = [first.result(120), second.result(120)]
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert [r.stdout.splitlines()[-1] for r in results] == ["read 15 3"] * 2
    assert not (tmp_path / "scanning-2").exists()  # one scan for both
    assert sum("indexed into" in r.stdout for r in results) == 1


@pytest.mark.slow
def test_a_killed_scanner_does_not_hang_the_others(tmp_path):
    split, cache = _tree(tmp_path / "train", per_class=5), tmp_path / "idx"
    doomed = _worker(tmp_path, split, cache, "scanning-1", 600)
    _wait_for(tmp_path / "scanning-1")
    waiting = _worker(tmp_path, split, cache, "scanning-2", 0)
    time.sleep(2)  # (most likely) blocked on the lock by now; either way it must not hang
    doomed.kill()
    result = waiting.result(120)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "read 15 3"
    assert (tmp_path / "scanning-2").exists()  # it scanned itself once the lock was free


def test_bench_scan_measures_both_loaders(tmp_path, monkeypatch):
    """tools/bench_scan.py's measurement (run here in-process; the tool runs it in a fresh process)."""
    from tools import bench_scan

    split = bench_scan.make_tree(tmp_path / "tree", 3, 20)
    monkeypatch.setenv("BENCH_SCAN_T0", repr(time.time()))
    rows = {kind: bench_scan.child(kind, str(split), str(tmp_path / "idx"), 2) for kind in ("imagefolder", "ours")}
    assert [r["samples"] for r in rows.values()] == [60, 60]
    assert all(len(r["worker_private_mib"]) == len(r["worker_pss_mib"]) == 2 for r in rows.values())
    assert index_path(split, tmp_path / "idx").is_file()  # ours wrote the index it would read warm
    summary = {k: bench_scan._summary([r]) for k, r in rows.items()}
    assert "| ours | " in bench_scan.table(summary, 2)
