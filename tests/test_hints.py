"""Every hint true (issue #23): for each user mistake whose one-line error (or notice) names a way
on, the test runs the mistaken command, checks the line names the fix, follows the fix
literally (the flag and value the line names, added to or put in place in the same command) and
checks that the next command runs."""

import json
from pathlib import Path

import pytest
import torch

import main
from tests import tinynet
from tests.conftest import tiny_args


def _run(capsys, argv):
    code = main.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _error(code, err, *fragments) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _ok(capsys, argv) -> str:
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    return out


def _swap(argv, flag, value):
    """``argv`` with ``flag``'s value replaced (the flag dropped when ``value`` is None)."""
    argv = [str(a) for a in argv]
    i = argv.index(flag)
    return argv[:i] + argv[i + 2:] + ([] if value is None else [flag, str(value)])


@pytest.fixture(scope="module")
def finished(image_folder, tmp_path_factory):
    tinynet.register()
    out = tmp_path_factory.mktemp("hints") / "finished"
    assert main.main([str(a) for a in tiny_args(image_folder, out, "--epochs", "1")]) == 0
    return out


def test_finished_run_names_more_epochs_or_fresh(finished, image_folder, tmp_path, capsys):
    import shutil

    for follow in (["--epochs", "2"], ["--fresh"]):
        out = shutil.copytree(finished, tmp_path / follow[0].strip("-"))
        argv = tiny_args(image_folder, out, "--epochs", "1")  # the command that trained it, again
        _error(*_run(capsys, argv)[::2], "holds a finished run", " ".join(follow))
        _ok(capsys, argv + follow)
        argv = argv + ["--resume", "auto"]  # with the launcher's --resume auto: the same hint
        if follow[0] == "--epochs":
            _error(*_run(capsys, argv)[::2], "pass --epochs 3 (or more)")


def test_the_same_command_continues_a_stopped_run(image_folder, tmp_path, capsys):
    argv = tiny_args(image_folder, tmp_path, "--epochs", "2")
    out = _ok(capsys, argv + ["--stop-step-num", "4"])  # stopped after its first epoch
    checked = dict(line.split(" = ", 1) for line in _ok(capsys, argv + ["--check"]).splitlines() if " = " in line)
    assert checked["checkpoint"].startswith(str(tmp_path)) and checked["checkpoint"].endswith(" (--resume auto)")
    out = _ok(capsys, argv)
    resumed = next(line for line in out.splitlines() if line.startswith("=> resumed from"))
    assert Path(checked["checkpoint"].split(" ")[0]).name in resumed  # --check names what the run resumes from
    assert (f"=> '{tmp_path}' holds this run, stopped after 1 of 2 epochs: the same command continues it "
            "(as --resume auto; --fresh starts over)") in out.splitlines()
    assert "=> resumed from" in out and "Epoch: [0]" not in out
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]


def test_checkpoint_of_another_arch_names_its_arch(image_folder, tmp_path, capsys):
    tinynet.register_flat()
    import models

    try:
        flat = tmp_path / "flat"
        _ok(capsys, tiny_args(image_folder, flat, "--epochs", "1", "-a", "tinyflat"))
        ckpt = flat / "checkpoint.pth.tar"
        for n, flags in enumerate((["--resume", ckpt, "--epochs", "2"], ["-e", "--resume", ckpt],
                                   ["--pretrained", ckpt, "--epochs", "1"], ["-e", "--pretrained", ckpt])):
            argv = tiny_args(image_folder, tmp_path / str(n), *flags)  # -a tinynet
            _error(*_run(capsys, argv)[::2], "is a tinyflat checkpoint but --arch is tinynet; pass -a tinyflat")
            _ok(capsys, _swap(argv, "-a", "tinyflat"))
    finally:
        models.unregister_model(tinynet.FLAT)


def test_bad_numbers_name_the_value_and_the_fix(image_folder, tmp_path, capsys):
    for n, (flag, value, hint, fixed) in enumerate((
            ("-b", 0, "-b/--batch-size 0 leaves less than 1 image per device (1 device); use -b 1 or more", 1),
            ("-b", -4, "-b/--batch-size -4 leaves less than 1 image per device (1 device); use -b 1 or more", 1),
            ("--per_batch_size", 0, "--per_batch_size 0 leaves less than 1 image per device (1 device); use "
             "--per_batch_size 1 or more", 1),
            ("-b", 64, "global batch 64 is larger than the 36 training images; use -b/--batch-size 36 or less", 36),
            ("--epochs", 0, "--epochs must be > 0, got 0", 1))):
        argv = tiny_args(image_folder, tmp_path / str(n), "--epochs", "1", "--stop-step-num", "1")
        argv = _swap(argv, flag, value) if flag in argv else argv + [flag, value]
        _error(*_run(capsys, argv)[::2], hint)
        _ok(capsys, _swap(argv, flag, fixed))


def test_another_run_s_folder_names_fresh(finished, image_folder, tmp_path, capsys):
    import shutil

    out = shutil.copytree(finished, tmp_path / "out")
    argv = tiny_args(image_folder, out, "--epochs", "1", "--image-size", "40")
    _error(*_run(capsys, argv)[::2], "holds another run (image size 32 -> 40)", "or --fresh")
    _ok(capsys, argv + ["--fresh"])


def test_checkpoint_of_another_run_or_weights_only_names_pretrained(finished, image_folder, tmp_path, capsys):
    ckpt = finished / "checkpoint.pth.tar"
    argv = tiny_args(image_folder, tmp_path / "other", "--epochs", "1", "--resume", ckpt, "--image-size", "40")
    _error(*_run(capsys, argv)[::2], f"start from its weights with --pretrained {ckpt}")
    _ok(capsys, _swap(argv, "--resume", None) + ["--pretrained", ckpt])
    weights = tmp_path / "weights.pth"
    torch.save({"state_dict": tinynet.build(3).state_dict(), "arch": "tinynet"}, weights)
    argv = tiny_args(image_folder, tmp_path / "w", "--epochs", "1", "--resume", weights)
    _error(*_run(capsys, argv)[::2], f"use --pretrained {weights} to start from it")
    _ok(capsys, _swap(argv, "--resume", None) + ["--pretrained", weights])


def test_split_folder_beside_its_val_says_how_to_validate(image_folder, tmp_path, capsys):
    out = _ok(capsys, tiny_args(image_folder / "train", tmp_path / "split", "--epochs", "1"))
    line = (f"=> training only, no validation: pass {image_folder} to validate on {image_folder / 'val'} "
            "each epoch")
    assert line in out.splitlines() and " * Acc@1" not in out
    out = _ok(capsys, tiny_args(image_folder, tmp_path / "root", "--epochs", "1"))  # followed: validates
    assert " * Acc@1" in out and "training only" not in out
