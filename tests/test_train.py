"""End-to-end: train, resume, evaluate on tiny data with the test-only tinynet."""

import json
import pickle
import re

import numpy as np
import pytest
import torch

from tests.conftest import tiny_args as tiny
from tests.conftest import train_in_process as train
from classify.checkpoint import load_checkpoint

EPOCH_KEYS = {"epoch", "lr", "train_loss", "train_acc1", "val_loss", "acc1", "acc5", "img_per_s", "epoch_time_s"}
SUMMARY_KEYS = {"arch", "recipe", "epochs", "world_size", "global_batch_size", "best_acc1", "final_acc1",
                "final_acc5", "fps", "train_time_s", "device", "amp", "val_images"}
STEP_LINE = re.compile(r"^Epoch: \[\d+\]\[ *\d+/\d+\]  Time [\d.]+ \([\d.]+\)  Data [\d.]+  Loss ([\d.]+) "
                       r"\([\d.]+\)  Acc@1 [\d.]+ \([\d.]+\)  LR [\d.e-]+  img/s [\d.]+  ETA \S+")


def test_train_resume_evaluate(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    log = train(capsys, *tiny(image_folder, out, "--epochs", "2"))
    lines = log.splitlines()
    assert any(STEP_LINE.match(line) for line in lines), log
    assert len([line for line in lines if re.match(r"^ \* Acc@1 [\d.]+ Acc@5 [\d.]+$", line)]) == 2
    fps_lines = [line for line in lines if "FPS@all" in line]
    assert [line.split()[0] for line in fps_lines] == ["[epoch", "[epoch"] and float(fps_lines[-1].split()[-1]) > 0
    for name in ("checkpoint.pth.tar", "model_best.pth.tar", "metrics.jsonl", "summary.json", "config.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "tinynet" and config["optim"]["epochs"] == 2 and config["loop"]["print_freq"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1] and all(EPOCH_KEYS <= set(r) for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["val_images"] == 21 and summary["epochs"] == 2
    ckpt = load_checkpoint(out / "checkpoint.pth.tar")
    assert {"state_dict", "optimizer", "lr_scheduler", "scaler", "epoch", "step", "best_acc1", "arch", "recipe",
            "args", "rng", "classes"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["classes"] == ["blue", "green", "red"]
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])

    log = train(capsys, *tiny(image_folder, out, "--epochs", "3", "--resume", out / "checkpoint.pth.tar"))
    assert "=> resumed from" in log and "Epoch: [2]" in log and "Epoch: [1]" not in log
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]

    final = json.loads((out / "summary.json").read_text())["final_acc1"]
    for flag in ("--resume", "--pretrained"):
        log = train(capsys, *tiny(image_folder, tmp_path / "eval", "-e", flag, out / "checkpoint.pth.tar"))
        acc = [line for line in log.splitlines() if line.startswith(" * Acc@1")]
        assert len(acc) == 1 and float(acc[0].split()[2]) == pytest.approx(final, abs=1e-3)


@pytest.mark.parametrize("precision", [[], ["--amp-dtype", "bf16"]], ids=["default", "bf16"])  # bf16: the default
def test_resume_is_bit_identical(image_folder, tmp_path, capsys, precision):  # of CPUs with native bf16
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(capsys, *tiny(image_folder, straight, "--epochs", "2", *precision))
    train(capsys, *tiny(image_folder, split, "--epochs", "2", "--stop-step-num", "4", *precision))  # epoch 0
    assert load_checkpoint(split / "checkpoint.pth.tar")["epoch"] == 1
    train(capsys, *tiny(image_folder, split, "--epochs", "2", "--resume", split / "checkpoint.pth.tar", *precision))
    a = load_checkpoint(straight / "checkpoint.pth.tar")["state_dict"]
    b = load_checkpoint(split / "checkpoint.pth.tar")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_learns_the_colour_task(image_folder, tmp_path, capsys):
    train(capsys, *tiny(image_folder, tmp_path, "--epochs", "6", "--lr", "0.1"))
    assert json.loads((tmp_path / "summary.json").read_text())["best_acc1"] > 60.0  # chance is 33%


def test_dummy_data(tmp_path, capsys):
    log = train(capsys, "--dummy", "--dummy-size", "32,10", "--num-classes", "4", *tiny(None, tmp_path)[1:],
                "--epochs", "1", "--image-size", "16")
    assert "dummy data" in log and " * Acc@1" in log
    assert json.loads((tmp_path / "summary.json").read_text())["val_images"] == 10


def write_cifar(root):
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 8) for i in range(1, 6)] + [("test_batch", 10)]:
        batch = {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_cifar10_python_batches(tmp_path, capsys):
    data = tmp_path / "cifar-10-batches-py"
    data.mkdir()
    write_cifar(data)
    log = train(capsys, *tiny(tmp_path, tmp_path / "out", "--epochs", "1"))  # parent dir: auto-detected
    assert "cifar10 data" in log and "40 train / 10 val images, 10 classes" in log
    assert load_checkpoint(tmp_path / "out" / "checkpoint.pth.tar")["classes"][0] == "c0"


def test_mindspore_style_split_folders(image_folder, tmp_path, capsys):
    log = train(capsys, *tiny(image_folder / "train", tmp_path, "--epochs", "1"))
    assert " * Acc@1" not in log and (tmp_path / "checkpoint.pth.tar").is_file()
    log = train(capsys, *tiny(image_folder / "val", tmp_path / "e", "-e", "--pretrained",
                              tmp_path / "checkpoint.pth.tar"))
    assert " * Acc@1" in log


def test_validation_loss_is_plain_cross_entropy():
    """Label smoothing is part of the training objective, not of the reported val_loss."""
    from classify.amp import AmpSettings
    from classify.loop import evaluate
    from classify.transforms import Normalize

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    normalize = Normalize((0.5,) * 3, (0.5,) * 3)
    stats = evaluate(model, [(images, target, 0)], device=torch.device("cpu"), amp=AmpSettings(False, None, None),
                     normalize=normalize)
    with torch.no_grad():
        logits = model(normalize(images))
    plain = torch.nn.functional.cross_entropy(logits, target).item()
    smoothed = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1).item()
    assert stats["loss"] == pytest.approx(plain, rel=1e-6) and abs(plain - smoothed) > 1e-3
