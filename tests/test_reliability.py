"""Nothing lost: atomic saves, exact resume after SIGKILL, SIGTERM checkpoints, auto-resume,
bad images, non-finite losses."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import main
from classify import checkpoint
from classify.checkpoint import load_checkpoint, save_atomic
from tests.conftest import ROOT, start_main, write_image_folder

# 480 synthetic images, batch 8: 60 steps an epoch, long enough to be interrupted.
DUMMY = ["--dummy", "--dummy-size", "480,40", "--num-classes", "4", "--image-size", "16", "-a", "tinynet",
         "-b", "8", "--workers", "0", "-p", "10"]


def start(args, out):
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "run_main.py"), *map(str, args),
                             "--output-dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"))


START_AHEAD = ("straight_run",)  # conftest's _start_ahead


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """2 epochs without interruption, started when the module starts (it needs nothing else),
    the reference for the killed-and-resumed run."""
    out = tmp_path_factory.mktemp("straight")
    proc = start_main(*DUMMY, "--epochs", "2", "--output-dir", out)
    yield proc, out
    proc.kill()


def wait_for_line(proc, needle, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        if needle in line:
            return line
    raise AssertionError(f"'{needle}' not seen (exit {proc.poll()}): {proc.stderr.read()[-2000:]}")


def weights(path):
    return load_checkpoint(path)["state_dict"]


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth.tar"
    save_atomic({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)

    def disk_full(obj, f):
        f.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(OSError):
        save_atomic({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1 and os.listdir(tmp_path) == ["checkpoint.pth.tar"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(run_main, straight_run, tmp_path):
    proc = start([*DUMMY, "--epochs", "2", "--ckpt-interval", "10"], tmp_path / "killed")
    wait_for_line(proc, "saved checkpoint at epoch 1 step")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ckpt = load_checkpoint(tmp_path / "killed" / "checkpoint.pth.tar")
    assert ckpt["epoch"] == 1 and 0 < ckpt["step"] < 60  # killed mid-epoch
    resumed = run_main(*DUMMY, "--epochs", "2", "--resume", "auto", "--output-dir", tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert f"(epoch 1, step {ckpt['step']})" in resumed.stdout
    straight, straight_dir = straight_run
    assert straight.result().returncode == 0, straight.result().stderr
    a, b = weights(straight_dir / "checkpoint.pth.tar"), weights(tmp_path / "killed" / "checkpoint.pth.tar")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_saves_and_exits_nonzero(tmp_path, run_main):
    proc = start([*DUMMY, "--epochs", "3"], tmp_path)
    wait_for_line(proc, "Epoch: [0][10/60]")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM at epoch 0 step" in err and "--resume auto" in err and "Traceback" not in err
    ckpt = load_checkpoint(tmp_path / "checkpoint.pth.tar")
    assert ckpt["epoch"] == 0 and ckpt["step"] >= 11
    done = run_main(*DUMMY, "--epochs", "1", "--resume", "auto", "--output-dir", tmp_path)
    assert done.returncode == 0 and f"step {ckpt['step']})" in done.stdout


def test_resume_auto_skips_a_corrupt_checkpoint(image_folder, tmp_path, capsys):
    args = [str(image_folder), "-a", "tinynet", "-b", "8", "--workers", "0", "--output-dir", str(tmp_path)]
    assert main.main([*args, "--epochs", "1"]) == 0
    (tmp_path / "checkpoint.pth.tar").write_bytes(b"\x00" * 100)  # e.g. a copy cut short
    capsys.readouterr()
    assert main.main([*args, "--epochs", "2", "--resume", "auto"]) == 0
    out = capsys.readouterr()
    assert "warning: skipping checkpoint" in out.err and "model_best.pth.tar' (epoch 1, step 0)" in out.out
    assert main.main([*args, "--epochs", "1", "--resume", "auto", "--output-dir", str(tmp_path / "new")]) == 0
    assert "no checkpoint in" in capsys.readouterr().out


@pytest.fixture
def folder_with_bad_files(tmp_path):
    root = write_image_folder(tmp_path / "data", train_per_class=12, val_per_class=3)
    (root / "train" / "red" / "truncated.jpg").write_bytes((root / "train" / "red" / "000.jpg").read_bytes()[:50])
    (root / "train" / "green" / "notanimage.jpg").write_text("hello")
    for hidden in (".DS_Store", ".hidden.jpg", "notes.txt"):  # ignored by the folder scan
        (root / "train" / "blue" / hidden).write_text("x")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    return root


def test_bad_images_are_skipped_and_counted(folder_with_bad_files, tmp_path, capsys):
    args = [str(folder_with_bad_files), "-a", "tinynet", "-b", "8", "--workers", "0", "--epochs", "1",
            "--output-dir", str(tmp_path)]
    assert main.main([*args, "--max-bad-images", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "38 train /" in out and "3 classes" in out  # hidden files and .txt not listed
    assert "skipped 2 unreadable images" in out  # 38 images, 2 bad, batch 8 drop_last: both read
    assert json.loads((tmp_path / "summary.json").read_text())["bad_images"] == 2
    assert main.main([*args, "--fresh"]) == 2  # default 1%: 2/38 is too many
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unreadable (more than --max-bad-images 0.01)" in err


def test_nonfinite_loss_stops_with_last_good_state(image_folder, tmp_path, capsys, request):
    import dataclasses

    import models

    entry, calls = models.get_model_entry("tinynet"), {"n": 0}

    def nan_from_third_step(*args):  # a bad batch from the third step on
        calls["n"] += 1
        main_out, loss = entry.loss(*args)
        return main_out, loss * float("nan") if calls["n"] >= 3 else loss

    models.register_model(dataclasses.replace(entry, loss=nan_from_third_step))
    request.addfinalizer(lambda: models.register_model(entry))
    args = [str(image_folder), "-a", "tinynet", "-b", "4", "--workers", "0", "--epochs", "1",
            "--output-dir", str(tmp_path)]
    assert main.main(args) == 3
    err = capsys.readouterr().err
    assert "non-finite loss at epoch 0 step 2" in err and "last good state is saved" in err
    saved = load_checkpoint(tmp_path / "checkpoint.pth.tar")
    assert saved["step"] == 2 and all(torch.isfinite(v.float()).all() for v in saved["state_dict"].values())
    calls["n"] = 0
    assert main.main([*args, "--nan-policy", "skip:2", "--fresh"]) == 3
    out = capsys.readouterr()
    assert out.out.count("step skipped") == 2 and "(3 such steps)" in out.err


def test_stop_at_an_epoch_s_last_step_resumes_to_its_end(image_folder, tmp_path, capsys, request):
    """A signal on the last step: the checkpoint is at step == steps per epoch; the resumed run
    only finishes the epoch (evaluation, checkpoint, record) — no empty FPS line, no NaN."""
    import dataclasses
    import os
    import signal

    import models

    entry, calls = models.get_model_entry("tinynet"), {"n": 0}

    def term_on_fourth_step(*args):  # 36 images, batch 8: the epoch's 4th and last step
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return entry.loss(*args)

    models.register_model(dataclasses.replace(entry, loss=term_on_fourth_step))
    request.addfinalizer(lambda: models.register_model(entry))
    args = [str(image_folder), "-a", "tinynet", "-b", "8", "--workers", "0", "--epochs", "1",
            "--output-dir", str(tmp_path)]
    assert main.main(args) == 128 + signal.SIGTERM
    assert load_checkpoint(tmp_path / "checkpoint.pth.tar")["step"] == 4
    capsys.readouterr()
    assert main.main([*args, "--resume", "auto"]) == 0
    out = capsys.readouterr().out
    assert "FPS@all" not in out and " * Acc@1 " in out
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])  # strict JSON: no NaN
    assert record["epoch"] == 0 and record["train_loss"] is None and record["acc1"] is not None
    assert load_checkpoint(tmp_path / "checkpoint.pth.tar")["epoch"] == 1
