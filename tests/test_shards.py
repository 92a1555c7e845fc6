"""WebDataset shards: tools/make_shards.py, --data on shards (folder, brace pattern, pipe:),
equal steps, exact evaluation over 3 processes, exact resume, bad members and shards."""

import collections
import dataclasses
import json
import os
import shutil
import signal
import sys

import pytest
import torch

import main
import models
from classify.checkpoint import load_checkpoint
from classify.data import DataSpec, build_datasets, build_loader
from classify.data.shards import ShardLoader, open_shards
from classify.errors import DataError
from tests.conftest import Background, write_image_folder

pytest.importorskip("webdataset")
from tools import make_shards  # noqa: E402  (after the importorskip)


def shard(root, out, *flags):
    assert make_shards.main([str(root), str(out), *flags]) == 0
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """36 train / 22 val images (one green image filed under red: Acc@1 below 100)."""
    root = write_image_folder(tmp_path_factory.mktemp("folder"))
    shutil.copy(root / "val" / "green" / "000.jpg", root / "val" / "red" / "900.jpg")
    return root


@pytest.fixture(scope="module")
def wds(folder, tmp_path_factory):
    return shard(folder, tmp_path_factory.mktemp("wds"), "--per-shard", "5", "--workers", "2")


def spec(root, **kw):
    return DataSpec(root=str(root), image_size=32, val_resize=36, **kw)


def targets_of(loader):
    out = collections.Counter()
    for images, target, bad in loader:
        out.update(target.tolist())
    return out


def test_round_trip_same_classes_and_counts(folder, wds):
    index = json.loads((wds / "index.json").read_text())
    assert index["classes"] == ["blue", "green", "red"]
    assert [s["count"] for s in index["train"]] == [5] * 7 + [1]
    assert sum(s["count"] for s in index["val"]) == 22 and (wds / "val-000004.tar").is_file()
    files, shards = build_datasets(spec(folder)), build_datasets(spec(wds))
    assert shards.kind == "shards" and shards.classes == files.classes
    assert (len(shards.train), len(shards.val)) == (len(files.train), len(files.val)) == (36, 22)
    folder_val = collections.Counter(files.val.table.labels.tolist())
    assert targets_of(build_loader(shards.val, batch_size=5, workers=0, train=False)) == folder_val
    train = build_loader(shards.train, batch_size=8, workers=2, train=True, seed=3)
    train.set_epoch(0)
    batches = list(train)
    assert len(batches) == len(train) == 4 and all(b[0].shape == (8, 3, 32, 32) for b in batches)


def test_ranks_run_equal_steps_and_val_counts_every_image_once(wds):
    data = build_datasets(spec(wds))
    lengths = [len(build_loader(data.train, batch_size=4, workers=2, train=True, rank=r, world_size=3))
               for r in range(3)]
    assert lengths == [3, 3, 3]  # 36 / 3 ranks / batch 4
    seen = collections.Counter()
    for r in range(3):
        seen += targets_of(build_loader(data.val, batch_size=3, workers=2, train=False, rank=r, world_size=3))
    assert sum(seen.values()) == 22 and seen == collections.Counter([0] * 7 + [1] * 7 + [2] * 8)


def test_brace_pattern_and_pipe_url_read_the_same_shards(wds):
    def first_batch(source):
        data = build_datasets(spec(source))
        loader = build_loader(data.train, batch_size=8, workers=0, train=True, seed=1)
        loader.set_epoch(2)
        return len(data.train), len(data.val), next(iter(loader))

    folder = first_batch(wds)
    for source in (f"{wds}/train-{{000000..000007}}.tar", f"pipe:cat {wds}/train-{{000000..000007}}.tar"):
        got = first_batch(source)
        assert got[:2] == folder[:2] and torch.equal(got[2][0], folder[2][0])
    part = build_datasets(spec(f"{wds}/train-{{000000..000001}}.tar"))
    assert len(part.train) == 10 and len(part.val) == 22  # a pattern picks train shards


def test_gpu_backend_decodes_shard_bytes_like_file_bytes(folder, wds):
    def val_batch(root):
        data = build_datasets(spec(root, backend="gpu"))
        return next(iter(build_loader(data.val, batch_size=22, workers=0, train=False)))

    files, shards = val_batch(folder), val_batch(wds)
    assert torch.equal(files[0], shards[0]) and torch.equal(files[1], shards[1]) and files[2] == shards[2] == 0


def test_missing_webdataset_is_one_line_with_the_install_command(wds, monkeypatch):
    monkeypatch.setitem(sys.modules, "webdataset", None)
    with pytest.raises(DataError, match=r"needs the webdataset package: pip install webdataset==\d"):
        build_datasets(spec(wds))


def test_make_shards_is_resumable_and_atomic(folder, wds, tmp_path):
    out = shard(folder, tmp_path / "w", "--per-shard", "5")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.tar")}
    (out / "train-000003.tar").unlink()
    (out / "index.json").unlink()
    (out / ".train-000004.tar.abc.tmp").write_bytes(b"half")  # what a kill mid-shard leaves
    shard(folder, out, "--per-shard", "5")
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.tar")}
    assert after.keys() == before.keys() and all(after[k][0] == before[k][0] for k in after)  # same bytes
    assert [k for k in after if after[k][1] != before[k][1]] == ["train-000003.tar"]  # only it rewritten
    assert (out / "index.json").read_text() == (wds / "index.json").read_text()
    assert make_shards.main([str(folder), str(out), "--per-shard", "6"]) == 2  # other settings: refused
    by_size = shard(folder, tmp_path / "s", "--shard-size", "8KB")
    assert sum(s["count"] for s in json.loads((by_size / "index.json").read_text())["train"]) == 36


def _tiny(data, out, *extra):
    return [str(data), "-a", "tinynet", "-b", "4", "--workers", "2", "-p", "100", "--output-dir", str(out),
            *[str(e) for e in extra]]


def test_resume_on_shards_is_bit_identical(wds, tmp_path, capsys, request):
    """Stopped at step 5 of 9 with 2 workers: the resumed run skips 3 + 2 batches and rotates them."""
    assert main.main(_tiny(wds, tmp_path / "straight", "--epochs", "1", "--no-val")) == 0
    entry, calls = models.get_model_entry("tinynet"), {"n": 0}

    def term_on_step_5(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return entry.loss(*args)

    models.register_model(dataclasses.replace(entry, loss=term_on_step_5))
    request.addfinalizer(lambda: models.register_model(entry))
    args = _tiny(wds, tmp_path / "killed", "--epochs", "1", "--no-val")
    assert main.main(args) == 128 + signal.SIGTERM
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pth.tar")["step"] == 5
    models.register_model(entry)
    assert main.main([*args, "--resume", "auto"]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pth.tar")["state_dict"]
    b = load_checkpoint(tmp_path / "killed" / "checkpoint.pth.tar")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()


@pytest.mark.slow
def test_three_process_evaluation_on_shards(folder, wds, tmp_path, capsys, subprocess_env):
    assert main.main(_tiny(folder, tmp_path / "train", "--epochs", "1", "--workers", "0")) == 0
    capsys.readouterr()
    flags = ["-a", "tinynet", "-b", "6", "--workers", "1", "-e", "--resume", tmp_path / "train" / "checkpoint.pth.tar"]
    assert main.main([str(a) for a in (folder, *flags, "--output-dir", tmp_path / "e1")]) == 0
    one = [line for line in capsys.readouterr().out.splitlines() if line.startswith(" * Acc@1")]
    proc = Background([sys.executable, "main_8p.py", "--device", "cpu", "--nproc_per_node", "3", wds, *flags,
                       "--output-dir", tmp_path / "e3"], env=subprocess_env).result(300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    three = [line for line in proc.stdout.splitlines() if line.startswith(" * Acc@1")]
    assert three == one and 0 < float(one[0].split()[2]) < 100
    s = json.loads((tmp_path / "e3" / "summary.json").read_text())
    assert (s["val_images"], s["world_size"]) == (22, 3)


def test_corrupt_member_is_counted_and_a_bad_shard_is_one_line(folder, tmp_path, capsys):
    messy = tmp_path / "messy"
    shutil.copytree(folder, messy)
    (messy / "train" / "green" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    wds = shard(messy, tmp_path / "w", "--per-shard", "5")
    args = _tiny(wds, tmp_path / "out", "--epochs", "1", "--no-val", "--max-bad-images", "0.1", "-b", "37")
    assert main.main(args) == 0
    assert "skipped 1 unreadable images" in capsys.readouterr().out
    victim = wds / "train-000002.tar"
    data = victim.read_bytes()
    for n, damage in enumerate((data[: len(data) // 2 + 100], b"this is not a tar file" * 50, data[:1024 * 3])):
        victim.write_bytes(damage)
        assert main.main([*args, "--output-dir", str(tmp_path / f"out{n}")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(victim) in err, err
    assert isinstance(build_loader(build_datasets(spec(wds)).train, batch_size=4, workers=0, train=True),
                      ShardLoader)
    with pytest.raises(DataError, match="cannot read the shard index"):
        open_shards(f"{tmp_path}/nothing-{{000000..000001}}.tar")


def test_check_reports_the_shard_layout(wds, tmp_path, capsys):
    assert main.main(["--check", str(wds), "-a", "tinynet", "--device", "cpu"]) == 0
    assert "data = shards train+val" in capsys.readouterr().out
    assert main.main(["--check", f"{wds}/val-{{000000..000004}}.tar", "-a", "tinynet", "--device", "cpu"]) == 1
    assert "is a validation folder" in capsys.readouterr().err  # val shards alone: -e
