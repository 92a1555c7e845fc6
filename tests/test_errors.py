"""Bad input: one stderr line naming the problem and the fix, exit code 2, no traceback,
nothing written or destroyed. Runs the real entry point in a subprocess."""

import os
import shutil

import pytest

from tests.conftest import write_image_folder


def assert_one_line_error(result, match):
    assert result.returncode == 2, (result.returncode, result.stderr)
    err = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(err) == 1, result.stderr
    assert "Traceback" not in result.stderr and match in err[0], err[0]


@pytest.fixture(scope="module")
def broken_trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    no_val = write_image_folder(root / "no_val", 2, 1)
    shutil.rmtree(no_val / "val")
    empty = write_image_folder(root / "empty_class", 2, 1)
    (empty / "train" / "purple").mkdir()
    differ = write_image_folder(root / "differ", 2, 1)
    (differ / "val" / "red").rename(differ / "val" / "orange")
    (root / "file.txt").write_text("x")
    return root


@pytest.mark.parametrize("args,match", [
    (["/nonexistent/imagenet"], "data path '/nonexistent/imagenet' does not exist"),
    (["{root}/file.txt"], "is not a folder"),
    (["{root}/no_val"], "has no val/"),
    (["{root}/empty_class"], "class folder '{root}/empty_class/train/purple' holds no images"),
    (["{root}/differ"], "train/ and val/ have different classes"),
    (["{root}/differ", "-a", "resnet50"], "unknown arch 'resnet50'"),
    (["{root}/differ", "--recipe", "foo"], "unknown recipe 'foo'"),
    (["{root}/differ", "--epochs", "-3"], "--epochs must be > 0"),
    (["{root}/differ", "--lr", "0"], "--lr must be > 0"),
    (["--epochs", "abc"], "argument --epochs"),
    (["--device", "tpu"], "unknown --device 'tpu'"),
])
def test_usage_errors(run_main, broken_trees, args, match):
    args = [a.format(root=broken_trees) for a in args]
    result = run_main(*args, "-a" if "-a" not in args else "--seed", "tinynet" if "-a" not in args else "1",
                      "--workers", "0", "--output-dir", broken_trees / "out")
    assert_one_line_error(result, match.format(root=broken_trees))


def test_missing_resume_file_leaves_output_alone(run_main, image_folder, tmp_path):
    keep = tmp_path / "checkpoint.pth.tar"
    keep.write_bytes(b"precious")
    result = run_main(image_folder, "-a", "tinynet", "--workers", "0", "--output-dir", tmp_path,
                      "--resume", tmp_path / "missing.pth.tar")
    assert_one_line_error(result, "checkpoint")
    assert "missing.pth.tar' not found" in result.stderr
    assert keep.read_bytes() == b"precious" and sorted(os.listdir(tmp_path)) == ["checkpoint.pth.tar"]


def test_corrupt_and_foreign_checkpoints(run_main, image_folder, tmp_path):
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"not a checkpoint at all")
    result = run_main(image_folder, "-a", "tinynet", "--workers", "0", "-e", "--resume", bad,
                      "--output-dir", tmp_path / "o")
    assert_one_line_error(result, "cannot be read")
    import torch

    other = tmp_path / "other.pth.tar"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "arch": "vgg16"}, other)
    result = run_main(image_folder, "-a", "tinynet", "--workers", "0", "-e", "--resume", other,
                      "--output-dir", tmp_path / "o")
    assert_one_line_error(result, "is a vgg16 checkpoint but --arch is tinynet")


def test_unwritable_output_dir(run_main, image_folder, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = run_main(image_folder, "-a", "tinynet", "--workers", "0", "--output-dir", blocker / "sub")
    assert_one_line_error(result, "is not writable")


def test_pretrained_not_cached(run_main, image_folder, tmp_path):
    result = run_main(image_folder, "-a", "alexnet", "--workers", "0", "-e", "--pretrained",
                      "--output-dir", tmp_path, env={"TORCH_HOME": str(tmp_path / "torch")})
    assert_one_line_error(result, "weights are not in the local cache")
    assert "alexnet-owt-7be5be79.pth" in result.stderr
