"""``python main.py --check`` / ``python main_8p.py --check`` (classify/check.py): what a run with
those flags would use, resolved and checked without starting anything; the launcher scripts
in test/ ask it once (tests/test_launchers.py runs them). In-process: ``main.main`` and
``main_8p.run`` (a usage error after ``--check`` exits through argparse's ``SystemExit``); accelerators are faked where a test needs
one (``fake_cuda``)."""

import os

import pytest
import torch

import main
import main_8p
from classify import check as checks
from classify import devices
from tests.conftest import assert_one_line_error, run_in_process, write_image_folder


def run_check(capsys, *argv, entry=main):
    """(exit code, stdout, stderr) of ``<entry> --check ARGV``."""
    return run_in_process(capsys, "--check", *argv, run=main.main if entry is main else main_8p.run)


def values(stdout):
    """The report as a dict; asserts it is exactly the documented keys, in order."""
    pairs = [line.split(" = ", 1) for line in stdout.splitlines()]
    assert [k for k, _ in pairs] == list(checks.KEYS), stdout
    return dict(pairs)


def good(capsys, *argv, entry=main):
    code, out, err = run_check(capsys, *argv, entry=entry)
    assert code == 0, err
    return values(out)


def one_line_error(capsys, *argv, entry=main):
    code, out, err = run_check(capsys, *argv, entry=entry)
    return assert_one_line_error(code, err, exit_code=1, out=out)


def tiny(*extra):
    return ["-a", "tinynet", "--device", "cpu", "--workers", "0", *extra]


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with ``n`` CUDA devices, as far as device resolution can tell."""

    def _fake(n):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        real = devices.device_count
        monkeypatch.setattr(devices, "device_count", lambda kind: n if kind == "cuda" else real(kind))

    return _fake


def test_good_folder(capsys, image_folder, tmp_path):
    out = tmp_path / "run"
    v = good(capsys, image_folder, *tiny("-b", "8", "--output-dir", out))
    assert v["arch"] == "tinynet" and v["recipe"] == "tinynet_modelzoo" and v["mode"] == "train"
    assert v["device"] == "cpu" and v["devices"] == "-" and int(v["device_count"]) >= 1
    assert v["world_size"] == "1" and v["nproc_per_node"] == "1"
    assert v["global_batch"] == "8" and v["per_device_batch"] == "8"
    assert v["data"] == "folder train+val" and v["data_path"] == str(image_folder)
    assert v["checkpoint"] == "none" and v["output_dir"] == str(out)
    assert not out.exists()  # nothing created


def test_val_folder_is_accepted_for_evaluation_only(capsys, image_folder, tmp_path):
    """A split folder itself (MindSpore style), as ``classify.data.folder.resolve_splits`` reads it."""
    weights = tmp_path / "model_best.pth.tar"
    weights.write_bytes(b"only its existence is checked")
    v = good(capsys, image_folder / "val", *tiny("-e", "--resume", weights, "--output-dir", tmp_path / "eval"))
    assert v["data"] == "folder val only" and v["data_path"] == str(image_folder / "val")
    assert v["mode"] == "evaluate" and v["checkpoint"] == f"{weights} (--resume)"
    line = one_line_error(capsys, image_folder / "val", *tiny())
    assert "is a validation folder; training needs train/" in line
    v = good(capsys, image_folder / "train", *tiny("--output-dir", tmp_path / "t"))
    assert v["data"] == "folder train only"
    assert "needs a val/ split" in one_line_error(capsys, image_folder / "train", *tiny("-e", "--resume", weights))
    assert "needs a val/ split" in one_line_error(capsys, image_folder, *tiny("-e", "--no-val", "--resume", weights))


def test_wrong_data_path_is_one_line(capsys, tmp_path):
    line = one_line_error(capsys, tmp_path / "nonexistent", *tiny())
    assert "does not exist" in line and "nonexistent" in line
    (tmp_path / "train" / "a").mkdir(parents=True)
    assert "has no val/" in one_line_error(capsys, "--data_path", tmp_path, *tiny())
    (tmp_path / "val" / "b").mkdir(parents=True)
    assert "different classes" in one_line_error(capsys, tmp_path, *tiny())


def test_missing_checkpoint_is_one_line(capsys, image_folder, tmp_path):
    best = tmp_path / "model_best.pth.tar"
    line = one_line_error(capsys, image_folder, *tiny("-e", "--resume", best))
    assert str(best) in line and "not found" in line and "--pth_path" in line
    (tmp_path / "checkpoint.pth.tar").write_bytes(b"x")  # the last epoch's: the error points to it
    assert "checkpoint.pth.tar, the last epoch's weights" in one_line_error(
        capsys, image_folder, *tiny("-e", "--resume", best))
    line = one_line_error(capsys, image_folder, *tiny("--pretrained", tmp_path / "w.pth"))
    assert "w.pth' not found" in line and "--pretrained" in line


def test_resume_auto_is_resolved_to_the_file_or_none(capsys, image_folder, tmp_path):
    v = good(capsys, image_folder, *tiny("--resume", "auto", "--output-dir", tmp_path))
    assert v["checkpoint"] == f"none (--resume auto: no checkpoint in {tmp_path})"
    torch.save({"state_dict": {}, "optimizer": {}, "lr_scheduler": {}, "epoch": 1}, tmp_path / "checkpoint.pth.tar")
    v = good(capsys, image_folder, *tiny("--resume", "auto", "--output-dir", tmp_path))
    assert v["checkpoint"] == f"{tmp_path / 'checkpoint.pth.tar'} (--resume auto)"


def test_demo_and_dummy(capsys, tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    monkeypatch.setenv("CLASSIFY_DEMO_DIR", str(demo))
    v = good(capsys, *tiny("--output-dir", tmp_path / "out"))
    assert v["data"] == "demo" and v["data_path"] == f"{demo} (generated on first use)"
    assert not demo.exists()  # the run generates it, not the check
    v = good(capsys, "--dummy", *tiny("--output-dir", tmp_path / "out"))
    assert v["data"] == "dummy" and v["data_path"] == "none"


def test_main_8p_splits_the_batch_over_its_workers(capsys, image_folder, tmp_path):
    v = good(capsys, *tiny("--nproc_per_node", "2", "--data", image_folder, "-b", "12", "--output-dir", tmp_path),
             entry=main_8p)
    assert v["world_size"] == "2" and v["nproc_per_node"] == "2" and v["device"] == "cpu"
    assert v["global_batch"] == "12" and v["per_device_batch"] == "6"
    # main.py --multiprocessing-distributed: the same launcher (2 gloo processes on cpu)
    v = good(capsys, image_folder, *tiny("--multiprocessing-distributed", "-b", "12", "--output-dir", tmp_path))
    assert v["world_size"] == "2" and v["per_device_batch"] == "6"
    assert "does not divide over 2 devices" in one_line_error(
        capsys, *tiny("--nproc_per_node", "2", "--data", image_folder, "-b", "7"), entry=main_8p)


def test_devices_against_the_visible_ones(capsys, image_folder, tmp_path, fake_cuda, monkeypatch):
    fake_cuda(4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    args = [image_folder, "-a", "tinynet", "-b", "8", "--output-dir", tmp_path, "--device", "cuda"]
    v = good(capsys, *args, "--device-id", "3")
    assert v["device"] == "cuda" and v["device_count"] == "4" and v["devices"] == "3"
    assert "cuda device 4 asked for but only 4 visible" in one_line_error(capsys, *args, "--device-id", "4")
    v = good(capsys, *args, "--device-id", "2", "--nproc_per_node", "2", entry=main_8p)
    assert v["devices"] == "2,3" and v["world_size"] == "2" and v["per_device_batch"] == "4"
    v = good(capsys, *args, entry=main_8p)  # every visible device by default
    assert v["devices"] == "0,1,2,3" and v["world_size"] == "4"
    line = one_line_error(capsys, *args, "--nproc_per_node", "999", entry=main_8p)
    assert "needs 999 cuda devices" in line and "4 are visible" in line and "--rank_size" in line
    assert "names devices that do not exist" in one_line_error(capsys, *args, "--device-list", "3,4",
                                                               entry=main_8p)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # the check changes nothing


def test_auto_is_what_python_resolves(capsys, image_folder, tmp_path):
    """``--device auto`` is ``classify.devices.resolve_kind``'s (npu only when torch_npu sees one)."""
    v = good(capsys, image_folder, "-a", "tinynet", "--output-dir", tmp_path)
    assert v["device"] == devices.resolve_kind("auto")
    assert "unknown --device 'tpu'" in one_line_error(capsys, image_folder, "-a", "tinynet", "--device", "tpu")


def test_usage_errors_are_one_line_exit_1(capsys, image_folder):
    assert "unrecognized arguments: --bogus" in one_line_error(capsys, image_folder, *tiny("--bogus"))
    assert "unrecognized arguments: --bogus" in one_line_error(capsys, image_folder, *tiny("--bogus"),
                                                               entry=main_8p)
    assert "unknown arch 'nosuchnet'" in one_line_error(capsys, image_folder, "-a", "nosuchnet")
    assert "--nproc_per_node" in one_line_error(capsys, *tiny("--nproc_per_node", "x"), entry=main_8p)


def test_launch_dry_run_starts_nothing(image_folder, monkeypatch):
    import classify.launch

    monkeypatch.setattr(classify.launch, "_run_torchrun", lambda argv: pytest.fail("workers started"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = []
    code = classify.launch.launch(["--device", "cpu", "--nproc_per_node", "3", str(image_folder), "-a", "tinynet"],
                                  validate=lambda *a, job: seen.append((*a, job)), dry_run=True)
    (worker_argv, world, local, job), = seen  # the job: its rendezvous id (a node joining its own job)
    assert code == 0 and (worker_argv, world, local) == (["--device=cpu", str(image_folder), "-a", "tinynet"], 3, 3)
    assert isinstance(job, str) and job
    assert "OMP_NUM_THREADS" not in os.environ


def test_real_launcher_runs_check_before_starting(image_folder, tmp_path, capsys, monkeypatch):
    """Without --check, main_8p.py validates the same way (one line, workers never start)."""
    import classify.launch

    monkeypatch.setattr(classify.launch, "_run_torchrun", lambda argv: pytest.fail("workers started"))
    code = main_8p.run([*tiny(), str(image_folder), "-e", "--resume", str(tmp_path / "none.pth.tar")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: checkpoint") and err.count("\n") == 1, err


def test_cifar_layout(capsys, tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "data_batch_1").write_bytes(b"")
    assert "has no test_batch" in one_line_error(capsys, tmp_path, *tiny())
    (root / "test_batch").write_bytes(b"")
    v = good(capsys, tmp_path, *tiny("--output-dir", tmp_path / "o"))
    assert v["data"] == "cifar10" and v["data_path"] == str(root)


def test_output_dir_that_is_a_file(capsys, image_folder, tmp_path):
    (tmp_path / "f").write_text("")
    assert "is a file" in one_line_error(capsys, image_folder, *tiny("--output-dir", tmp_path / "f"))


@pytest.mark.slow
def test_main_py_check_subprocess(tmp_path, subprocess_env):
    """The real command line: stdout is the report alone, the exit code 0; then 1 and one line."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    data = write_image_folder(tmp_path / "data", train_per_class=1, val_per_class=1, size=8)
    proc = subprocess.run([sys.executable, "main.py", "--check", "--data_path", str(data), "-a", "tinynet",
                           "--device", "cpu", "--output-dir", str(tmp_path / "out")],
                          cwd=ROOT, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert values(proc.stdout)["data"] == "folder train+val"
    proc = subprocess.run([sys.executable, "main_8p.py", "--check", "--data_path", str(tmp_path / "nope"),
                           "--device", "cpu"], cwd=ROOT, env=subprocess_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "out").exists()
