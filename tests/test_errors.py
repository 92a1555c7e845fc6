"""The catalogue of bad inputs (docs/troubleshooting.md), table-driven.

For each entry: exit code 2, exactly one stderr line that names the problem, no traceback,
no partial files, and the output dir's existing content untouched. Most entries run the
entry point in-process (fast); a few run it in a subprocess to prove the same holds for a
real process (exit status, no traceback printed by the interpreter). Those subprocesses
start together when the module starts (conftest's ``start_ahead``) and run beside the
in-process entries."""

import os
import shutil
from pathlib import Path

import pytest
import torch

import main
from tests.conftest import assert_one_line_error, start_main, write_image_folder

PRECIOUS = b"an earlier run's checkpoint"


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogue")
    good = write_image_folder(root / "good", 3, 2)
    shutil.rmtree(write_image_folder(root / "no_val", 2, 1) / "val")
    (write_image_folder(root / "empty_class", 2, 1) / "train" / "purple").mkdir()
    differ = write_image_folder(root / "differ", 2, 1)
    (differ / "val" / "red").rename(differ / "val" / "orange")
    bad = write_image_folder(root / "bad_images", 3, 2)
    for i in range(3):
        (bad / "train" / "red" / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "a_file.txt").write_text("x")
    (root / "truncated.pth.tar").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    (root / "not_a_ckpt.pth.tar").write_bytes(b"hello world")
    torch.save({"state_dict": {"w": torch.zeros(1)}, "arch": "vgg16"}, root / "vgg16.pth.tar")
    tiny = {k: v for k, v in _tinynet_state(num_classes=5).items()}
    torch.save({"state_dict": tiny, "arch": "tinynet"}, root / "five_classes.pth.tar")
    return root, good


def _tinynet_state(num_classes):
    from tests import tinynet

    return tinynet.build(num_classes).state_dict()


# (id, argv with {root}/{good}/{out} placeholders, text the stderr line must contain)
CATALOGUE = [
    ("data-missing", ["/nonexistent/imagenet"], "data path '/nonexistent/imagenet' does not exist"),
    ("data-is-file", ["{root}/a_file.txt"], "is not a folder"),
    ("no-val", ["{root}/no_val"], "has no val/"),
    ("empty-class", ["{root}/empty_class"], "class folder '{root}/empty_class/train/purple' holds no images"),
    ("classes-differ", ["{root}/differ"], "train/ and val/ have different classes"),
    ("unknown-arch", ["{good}", "-a", "resnet9000"], "unknown arch 'resnet9000'"),
    ("unknown-recipe", ["{good}", "--recipe", "foo"], "unknown recipe 'foo'"),
    ("recipe-arch-mismatch", ["{good}", "-a", "vgg16", "--recipe", "alexnet_modelzoo"], "is for alexnet, not vgg16"),
    ("negative-epochs", ["{good}", "--epochs", "-3"], "--epochs must be > 0"),
    ("zero-lr", ["{good}", "--lr", "0"], "--lr must be > 0"),
    ("negative-lr", ["{good}", "--lr", "-0.1"], "--lr must be > 0"),
    ("zero-batch", ["{good}", "-b", "0"], "-b/--batch-size 0 leaves less than 1 image per device (1 device); "
     "use -b 1 or more"),
    ("unknown-device", ["{good}", "--device", "tpu"], "unknown --device 'tpu'"),
    ("image-too-small", ["{good}", "-a", "alexnet", "--image-size", "32"], "too small for alexnet"),
    ("val-resize-small", ["{good}", "--image-size", "64", "--val-resize", "32"], "smaller than --image-size"),
    ("few-num-classes", ["{good}", "--num-classes", "2"], "--num-classes 2 is less than the 3 classes"),
    ("bad-scheduler", ["{good}", "--lr-scheduler", "poly"], "unknown --lr-scheduler 'poly'"),
    ("bad-opt-level", ["{good}", "--opt-level", "O7"], "unknown --opt-level"),
    ("bad-loss-scale", ["{good}", "--loss-scale", "abc"], "--loss-scale must be a number"),
    ("bad-label-smooth", ["{good}", "--label_smooth", "2"], "--label_smooth must be 0 or 1"),
    ("bad-nan-policy", ["{good}", "--nan-policy", "ignore"], "--nan-policy must be"),
    ("bad-max-bad", ["{good}", "--max-bad-images", "2"], "--max-bad-images is a fraction"),
    ("bad-dummy-size", ["--dummy", "--dummy-size", "5"], "--dummy-size takes TRAIN,VAL"),
    ("unknown-data-backend", ["{good}", "--data-backend", "dali"], "unknown --data-backend 'dali'"),
    ("dummy-vs-backend", ["--dummy", "--data-backend", "gpu"], "--dummy and --data-backend gpu contradict"),
    ("unwritable-output", ["{good}", "--output-dir", "{root}/a_file.txt/sub"], "is not writable"),
    ("resume-missing", ["{good}", "--resume", "{out}/missing.pth.tar"], "missing.pth.tar' not found"),
    ("resume-truncated", ["{good}", "--resume", "{root}/truncated.pth.tar"], "cannot be read (truncated"),
    ("resume-not-ckpt", ["{good}", "-e", "--resume", "{root}/not_a_ckpt.pth.tar"], "cannot be read"),
    ("resume-other-arch", ["{good}", "-e", "--resume", "{root}/vgg16.pth.tar"],
     "is a vgg16 checkpoint but --arch is tinynet"),
    ("resume-other-classes", ["{good}", "-e", "--resume", "{root}/five_classes.pth.tar"],
     "has shape (5, 16), model has (3, 16)"),
    ("pretrained-not-cached", ["{good}", "-a", "alexnet", "-e", "--pretrained"], "not in the local cache"),
    ("too-many-bad-images", ["{root}/bad_images", "--epochs", "1"], "unreadable (more than --max-bad-images"),
    ("eval-without-val", ["{good}/train", "-e"], "needs a val/ split"),
    ("aux-on-vgg", ["{good}", "-a", "vgg16", "--aux-logits"], "--aux-logits is not an option of vgg16"),
]


def fill(args, root, good, out):
    return [a.format(root=root, good=good, out=out) for a in args]


# Failures found only once training has started: the run wrote its config.json by then.
STARTED = {"too-many-bad-images"}


def check_output_dir(out: Path, started: bool = False):
    """Only what was there before, unchanged: no partial or temp files. A run that failed after it
    started ran in an empty folder (one holding a checkpoint is another run's: refused) and left
    its config.json."""
    if started:
        assert sorted(os.listdir(out)) == ["config.json"]
        return
    assert sorted(os.listdir(out)) == ["checkpoint.pth.tar"]
    assert (out / "checkpoint.pth.tar").read_bytes() == PRECIOUS


def with_precious_checkpoint(path: Path) -> Path:
    (path / "checkpoint.pth.tar").write_bytes(PRECIOUS)
    return path


@pytest.fixture
def out(tmp_path):
    return with_precious_checkpoint(tmp_path)


REAL_PROCESS = ["data-missing", "resume-truncated", "unwritable-output"]


START_AHEAD = ("real_processes",)  # conftest's _start_ahead


@pytest.fixture(scope="module")
def real_processes(trees, tmp_path_factory):
    """The REAL_PROCESS entries and a parse error, each in a ``tests/run_main.py`` process, all
    started at once: {name: (process, its output dir)}."""
    root, good = trees
    started = {}
    for name in REAL_PROCESS:
        out = with_precious_checkpoint(tmp_path_factory.mktemp(name))
        _, args, _ = next(c for c in CATALOGUE if c[0] == name)
        argv = fill(args, root, good, out)
        argv += ["-a", "tinynet", "--workers", "0"] + ([] if "--output-dir" in argv else ["--output-dir", str(out)])
        started[name] = start_main(*argv), out
    started["parse-error"] = start_main("--epochs", "ten"), None
    yield started
    for proc, _ in started.values():
        proc.kill()


@pytest.mark.parametrize("name,args,match", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue(name, args, match, trees, out, capsys, monkeypatch):
    root, good = trees
    monkeypatch.setenv("TORCH_HOME", str(root / "torch_home"))  # an empty torch cache
    if name in STARTED:
        (out / "checkpoint.pth.tar").unlink()
    argv = fill(args, root, good, out)
    if "-a" not in argv:
        argv += ["-a", "tinynet"]
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(out)]
    code = main.main(argv + ["--workers", "0", "-b" if "-b" not in argv else "--seed", "4" if "-b" not in argv
                             else "1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert match.format(root=root) in err[0], err[0]
    check_output_dir(out, started=name in STARTED)


def test_parse_errors_exit_2_with_one_line(capsys):
    for argv in (["--epochs", "ten"], ["--no-such-flag"], ["--amp-dtype", "fp8"]):
        with pytest.raises(SystemExit) as e:
            main.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("main.py: error: "), err


@pytest.mark.parametrize("name", REAL_PROCESS)
def test_catalogue_in_a_real_process(name, trees, real_processes):
    root, good = trees
    _, _, match = next(c for c in CATALOGUE if c[0] == name)
    proc, out = real_processes[name]
    result = proc.result()
    assert_one_line_error(result.returncode, result.stderr, match.format(root=root))
    check_output_dir(out)


def test_parse_error_in_a_real_process(real_processes):
    result = real_processes["parse-error"][0].result()
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "invalid int value" in result.stderr
