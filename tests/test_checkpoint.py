"""classify/checkpoint.py: CheckpointManager (retention, best, --resume auto, restore) and
safe loading (a checkpoint is data, never code), in the style of timm's test_checkpoint_saver."""

import os
import pathlib
import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from classify.checkpoint import BEST, LATEST, CheckpointManager, Progress, TrainingObjects, load_checkpoint
from classify.devices import rng_state
from classify.errors import CheckpointError, UnsafeCheckpoint
from classify.optim import make_optimizer
from classify.schedules import build_scheduler
from tests.conftest import ROOT, Background, tiny_args


def _objects(seed=0) -> TrainingObjects:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3))
    optimizer = make_optimizer(model, lr=0.1, momentum=0.9, weight_decay=0.0, device=torch.device("cpu"))
    scheduler = build_scheduler(optimizer, name="cosine", epochs=5, steps_per_epoch=2)
    return TrainingObjects(model, optimizer, scheduler)


def _step(objects: TrainingObjects) -> None:
    loss = objects.model(torch.randn(2, 4)).sum()
    objects.optimizer.zero_grad()
    loss.backward()
    objects.optimizer.step()
    objects.scheduler.step()


def _manager(path, keep=0) -> CheckpointManager:
    return CheckpointManager(path, is_main=True, keep=keep, run_info={"arch": "tinynet", "recipe": "r"},
                             warn=lambda msg: None)


def test_keep_n_newest_epoch_files(tmp_path):
    ckpt, objects = _manager(tmp_path, keep=2), _objects()
    for epoch in range(5):
        _step(objects)
        ckpt.save(objects, Progress(epoch=epoch + 1), finished_epoch=epoch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3.pth.tar", "checkpoint-4.pth.tar", LATEST]
    assert [e for e, _ in ckpt.epoch_files()] == [3, 4]
    assert load_checkpoint(tmp_path / "checkpoint-3.pth.tar")["epoch"] == 4
    assert load_checkpoint(tmp_path / "checkpoint-4.pth.tar")["epoch"] == 5


def test_default_keeps_only_the_latest(tmp_path):
    ckpt, objects = _manager(tmp_path), _objects()
    for epoch in range(3):
        ckpt.save(objects, Progress(epoch=epoch + 1), finished_epoch=epoch)
    assert [p.name for p in tmp_path.iterdir()] == [LATEST]


def test_best_is_a_separate_copy_of_the_file_just_saved(tmp_path):
    ckpt, objects = _manager(tmp_path), _objects()
    ckpt.save(objects, Progress(epoch=1, best_acc1=50.0), is_best=True, finished_epoch=0)
    assert (tmp_path / BEST).read_bytes() == (tmp_path / LATEST).read_bytes()
    best_bytes = (tmp_path / BEST).read_bytes()
    _step(objects)
    ckpt.save(objects, Progress(epoch=2, best_acc1=50.0), finished_epoch=1)  # not better: best stays
    assert (tmp_path / BEST).read_bytes() == best_bytes != (tmp_path / LATEST).read_bytes()
    assert os.stat(tmp_path / BEST).st_ino != os.stat(tmp_path / LATEST).st_ino  # independent files
    (tmp_path / LATEST).write_bytes(b"\0" * 10)  # an in-place overwrite of one file ...
    assert load_checkpoint(tmp_path / BEST)["epoch"] == 1  # ... leaves the other intact


def test_resume_auto_picks_the_most_advanced_valid_file(tmp_path):
    ckpt, objects = _manager(tmp_path, keep=3), _objects()
    for epoch in range(3):
        ckpt.save(objects, Progress(epoch=epoch + 1), is_best=epoch == 0, finished_epoch=epoch)
    ckpt.save(objects, Progress(epoch=3, step=5))  # mid-epoch save: the most advanced
    assert ckpt.resume_path("auto") == tmp_path / LATEST
    (tmp_path / LATEST).write_bytes(b"\0" * 100)  # corrupt: skipped with a warning
    warnings = []
    ckpt.warn = warnings.append
    assert ckpt.resume_path("auto") == tmp_path / "checkpoint-2.pth.tar"
    assert len(warnings) == 1 and "skipping checkpoint" in warnings[0] and "cannot be read" in warnings[0]
    torch.save({"state_dict": objects.model.state_dict(), "epoch": 9}, tmp_path / "weights.pth.tar")
    assert ckpt.resume_path("auto") == tmp_path / "checkpoint-2.pth.tar"  # weights only: not resumable
    assert ckpt.resume_path("x/y.pth.tar") == pathlib.Path("x/y.pth.tar") and ckpt.resume_path(None) is None
    assert _manager(tmp_path / "empty").resume_path("auto") is None


def test_resume_auto_reads_metadata_only(tmp_path, monkeypatch):
    ckpt, objects = _manager(tmp_path), _objects()
    ckpt.save(objects, Progress(epoch=1))
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    assert ckpt.resume_path("auto") == tmp_path / LATEST
    assert calls and all(kw.get("mmap") and kw.get("weights_only") for kw in calls)


def test_restore_round_trip_is_exact(tmp_path):
    ckpt, objects = _manager(tmp_path), _objects(seed=0)
    _step(objects)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ckpt.save(objects, Progress(epoch=2, step=1, best_acc1=12.5))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    _step(objects)
    reference = [p.detach().clone() for p in objects.model.parameters()]
    fresh = _objects(seed=1)
    progress = ckpt.restore(tmp_path / LATEST, fresh, arch="tinynet", rank=0, world_size=1)
    assert (progress.epoch, progress.step, progress.best_acc1) == (2, 1, 12.5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    _step(fresh)
    for a, b in zip(fresh.model.parameters(), reference):
        assert torch.equal(a, b)


def test_our_checkpoint_holds_only_tensors_and_plain_values(tmp_path):
    _manager(tmp_path).save(_objects(), Progress(epoch=1))
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / LATEST) == []
    assert isinstance(rng_state()["numpy"]["key"], torch.Tensor)


def test_checkpoint_of_an_earlier_version_still_restores(tmp_path):
    """Its RNG states were Python/numpy tuples (numpy arrays inside): allowed, and restored."""
    objects = _objects()
    np.random.seed(5)
    legacy_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = np.random.rand()
    torch.save({"state_dict": objects.model.state_dict(), "optimizer": objects.optimizer.state_dict(),
                "lr_scheduler": objects.scheduler.state_dict(), "epoch": 1, "step": 0, "rng": legacy_rng,
                "rng_per_rank": [legacy_rng]}, tmp_path / "old.pth.tar")
    np.random.seed(0)
    _manager(tmp_path).restore(tmp_path / "old.pth.tar", _objects(), arch="tinynet", rank=0, world_size=1)
    assert np.random.rand() == expected


class _Evil:
    """Unpickling it creates ``marker`` (what a hostile checkpoint would do with arbitrary code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _evil_checkpoint(path, marker):
    torch.save({"state_dict": nn.Linear(2, 2).state_dict(), "optimizer": {}, "lr_scheduler": {}, "epoch": 0,
                "arch": "tinynet", "payload": _Evil(marker)}, path)
    return path


def test_load_refuses_a_file_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = _evil_checkpoint(tmp_path / "evil.pth.tar", marker)
    with pytest.raises(UnsafeCheckpoint, match=r"holds objects other than tensors and plain values \(.*pathlib\.Path"):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpoint, match="refusing to load it — it could run code"):
        _manager(tmp_path).resume_path("auto")  # never skipped silently: a file that holds code stops the run
    assert isinstance(UnsafeCheckpoint("x"), CheckpointError) and not marker.exists()


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evil")
    return _evil_checkpoint(folder / "evil.pth.tar", folder / "pwned"), folder / "pwned"


@pytest.mark.parametrize("flags", [["--resume", "{evil}"], ["-e", "--resume", "{evil}"], ["--pretrained", "{evil}"],
                                   ["-e", "--pretrained", "{evil}"], ["--resume", "auto"]],
                         ids=["resume", "evaluate", "pretrained", "evaluate-pretrained", "resume-auto"])
def test_every_trainer_entry_refuses_it(flags, evil, image_folder, tmp_path, capsys):
    import main

    path, marker = evil
    if flags == ["--resume", "auto"]:
        (tmp_path / LATEST).write_bytes(path.read_bytes())
    argv = tiny_args(image_folder, tmp_path, "--epochs", "1", *[f.format(evil=path) for f in flags])
    assert main.main([str(a) for a in argv]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "refusing to load it — it could run code" in err[0], err
    assert not marker.exists()


@pytest.mark.parametrize("tool", [["tools/predict.py", "--checkpoint", "{evil}", "{image}"],
                                  ["tools/export_onnx.py", "--checkpoint", "{evil}", "--output", "{out}"]],
                         ids=["predict", "export_onnx"])
def test_every_tool_refuses_it(tool, evil, image_folder, tmp_path):
    import sys

    path, marker = evil
    image = next((image_folder / "val").rglob("*.jpg"))
    cmd = [sys.executable, ROOT / tool[0], *[a.format(evil=path, image=image, out=tmp_path / "m.onnx")
                                             for a in tool[1:]]]
    result = Background(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT))).result(120)
    err = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(err) == 1 and "refusing to load it" in err[0], result.stderr
    assert not marker.exists()


def test_numpy_1_pickles_of_the_old_rng_state_load_too(tmp_path):
    """numpy 1.x names the array reconstructor numpy.core..., numpy 2 numpy._core...: both load."""
    import zipfile

    torch.save({"state_dict": {}, "rng": np.random.get_state()}, tmp_path / "np2.pth.tar")
    with zipfile.ZipFile(tmp_path / "np2.pth.tar") as src, zipfile.ZipFile(tmp_path / "np1.pth.tar", "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(item, data)
    for name in ("np1.pth.tar", "np2.pth.tar"):
        assert isinstance(load_checkpoint(tmp_path / name)["rng"][1], np.ndarray)


def test_resume_auto_finds_a_checkpoint_in_torch_s_old_format(tmp_path):
    objects = _objects()
    torch.save({"state_dict": objects.model.state_dict(), "optimizer": objects.optimizer.state_dict(),
                "lr_scheduler": objects.scheduler.state_dict(), "epoch": 5, "step": 0}, tmp_path / LATEST,
               _use_new_zipfile_serialization=False)  # cannot be memory-mapped: read in full
    assert _manager(tmp_path).resume_path("auto") == tmp_path / LATEST


def test_a_file_crafted_to_fail_inside_an_allowed_constructor_is_one_line(tmp_path):
    import pickle

    class BadDtype:  # pickles as numpy.dtype('zz'): an allowed global that raises TypeError
        def __reduce__(self):
            return np.dtype, ("zz", False, True)

    path = tmp_path / "bad.pth.tar"
    torch.save({"state_dict": {}, "x": BadDtype()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)


def test_keep_n_in_a_reused_dir_never_removes_the_file_just_written(tmp_path):
    objects = _objects()
    old = _manager(tmp_path, keep=2)
    for epoch in (5, 6, 7):  # an earlier, longer run
        old.save(objects, Progress(epoch=epoch + 1), finished_epoch=epoch)
    _manager(tmp_path, keep=2).save(objects, Progress(epoch=1), finished_epoch=0)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-0.pth.tar", "checkpoint-7.pth.tar"]
