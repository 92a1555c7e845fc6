"""An output folder knows which run it holds (classify/rundir.py): continuing only a run of the
same identity, refusing a folder of another run or a finished one before touching it, --fresh
moving the old run aside, model_best only replaced by a better model of the same run, and no
empty folder left by an error before training."""

import json
import shutil

import pytest
import torch

import main
from classify.checkpoint import BEST, CheckpointManager, Progress, TrainingObjects, load_checkpoint, save_atomic
from tests import tinynet
from tests.conftest import assert_one_line_error as _one_line
from tests.conftest import run_in_process as _run
from tests.conftest import tiny_args


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished_once(image_folder, tmp_path_factory):
    tinynet.register()  # (conftest registers it per test)
    out = tmp_path_factory.mktemp("finished") / "out"
    assert main.main([str(a) for a in tiny_args(image_folder, out, "--epochs", "1")]) == 0
    return out


@pytest.fixture
def finished(finished_once, tmp_path):
    """A finished 1-epoch tinynet run in tmp_path/out (a copy: each test may change it)."""
    return shutil.copytree(finished_once, tmp_path / "out")


def test_another_run_is_refused_before_anything_is_touched(finished, image_folder, tmp_path, capsys):
    other = tmp_path / "other_data"
    shutil.copytree(image_folder, other)  # the same classes, another data root
    before = _snapshot(finished)
    code, _, err = _run(capsys, *tiny_args(other, finished, "--epochs", "2", "--resume", "auto"))
    _one_line(code, err, f"holds another run (data root '{image_folder}' -> '{other}')", "--fresh",
              "another --output-dir")
    code, _, err = _run(capsys, *tiny_args(image_folder, finished, "--epochs", "2", "--resume", "auto",
                                           "--image-size", "40", "-b", "4"))
    _one_line(code, err, "image size 32 -> 40", "global batch 8 -> 4")
    assert _snapshot(finished) == before
    # the launcher's pre-flight says the same, before anything starts
    assert main.main(["--check", *map(str, tiny_args(other, finished, "--resume", "auto"))]) == 1
    assert "holds another run" in capsys.readouterr().err


def test_a_new_run_into_a_finished_run_s_folder(finished, image_folder, capsys):
    before = _snapshot(finished)
    code, _, err = _run(capsys, *tiny_args(image_folder, finished, "--epochs", "1"))
    _one_line(code, err, "holds a finished run of this config (1 epoch); pass --epochs 2 (or more) to train it "
              "further", "--fresh")
    code, _, err = _run(capsys, *tiny_args(image_folder, finished, "--epochs", "1", "--resume", "auto"))
    _one_line(code, err, "holds a finished run of this config (1 epoch); pass --epochs 2 (or more)")
    assert _snapshot(finished) == before
    run_id = json.loads((finished / "config.json").read_text())["identity"]["run_id"]
    code, out, err = _run(capsys, *tiny_args(image_folder, finished, "--epochs", "2", "--resume", "auto"))
    assert code == 0, err
    assert json.loads((finished / "config.json").read_text())["identity"]["run_id"] == run_id  # the same run
    epochs = [json.loads(line)["epoch"] for line in (finished / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]


def test_fresh_moves_the_old_run_aside(finished, image_folder, capsys):
    (finished / "notes.txt").write_text("mine")
    old = _snapshot(finished)
    old_id = json.loads(old["config.json"])["identity"]["run_id"]
    code, out, err = _run(capsys, *tiny_args(image_folder, finished, "--epochs", "1", "--fresh", "--resume", "auto"))
    assert code == 0, err
    [previous] = list(finished.glob("previous-*"))
    assert f"moved to '{previous}'" in out
    moved = _snapshot(previous)
    assert {"checkpoint.pth.tar", "model_best.pth.tar", "metrics.jsonl", "summary.json", "config.json"} <= set(moved)
    assert all(moved[name] == old[name] for name in moved)  # moved, not rewritten
    assert not (previous / ".classify.lock").exists()  # the run's lock (classify/lock.py) is never moved
    assert (finished / "notes.txt").read_text() == "mine"
    assert json.loads((finished / "config.json").read_text())["identity"]["run_id"] != old_id
    assert len((finished / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_path_of_another_run_is_refused(finished, image_folder, tmp_path, capsys):
    ckpt = finished / "checkpoint.pth.tar"
    code, _, err = _run(capsys, *tiny_args(image_folder, tmp_path / "new", "--epochs", "2", "--resume", ckpt,
                                           "--image-size", "40"))
    _one_line(code, err, "is of another run (image size 32 -> 40)", f"--pretrained {ckpt}")
    assert not (tmp_path / "new").exists()  # an error before training leaves no folder behind


def test_model_best_only_replaced_by_a_better_model_of_the_same_run(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    objects = TrainingObjects(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    messages = []

    def manager(run_id):
        return CheckpointManager(tmp_path, is_main=True, run_info={"identity": {"run_id": run_id}},
                                 warn=messages.append)

    save_atomic({"state_dict": {}, "best_acc1": 90.0, "identity": {"run_id": "other"}}, tmp_path / BEST)
    manager("mine").save(objects, Progress(epoch=1, best_acc1=95.0), is_best=True)
    assert load_checkpoint(tmp_path / BEST)["best_acc1"] == 90.0 and "of another run" in messages[0]
    save_atomic({"state_dict": {}, "best_acc1": 90.0, "identity": {"run_id": "mine"}}, tmp_path / BEST)
    manager("mine").save(objects, Progress(epoch=1, best_acc1=50.0), is_best=True)
    assert load_checkpoint(tmp_path / BEST)["best_acc1"] == 90.0
    manager("mine").save(objects, Progress(epoch=2, best_acc1=95.0), is_best=True)
    assert load_checkpoint(tmp_path / BEST)["best_acc1"] == 95.0


def test_errors_before_training_leave_no_output_folder(image_folder, tmp_path, capsys):
    out = tmp_path / "a" / "b"
    code, _, err = _run(capsys, *tiny_args(tmp_path / "missing", out))
    assert code == 2 and "does not exist" in err and not (tmp_path / "a").exists()
    code, _, err = _run(capsys, *tiny_args(image_folder, out, "--resume", tmp_path / "none.pth.tar"))
    assert code == 2 and "not found" in err and not (tmp_path / "a").exists()


def test_evaluation_in_a_training_run_s_folder_leaves_it_alone(finished, image_folder, capsys):
    before = _snapshot(finished)
    code, out, err = _run(capsys, *tiny_args(image_folder, finished, "-e", "--resume", finished / BEST))
    assert code == 0, err
    assert _snapshot(finished) == before  # its config.json (identity) and summary.json stay
    assert json.loads((finished / "eval" / "summary.json").read_text())["final_acc1"] is not None
