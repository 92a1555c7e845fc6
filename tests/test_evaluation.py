"""Evaluation you can trust (docs/own-data.md, "Evaluation"): --tta flip, eval/per_class.csv and
eval/confusion.csv, tools/avg_checkpoints.py."""

import csv
import importlib.util
import json

import pytest
import torch
import torch.nn as nn

import main
from classify.amp import AmpSettings
from classify.checkpoint import load_checkpoint, save_atomic
from classify.inference import load_trained_model
from classify.loop import evaluate, tta_logits
from classify.report import write_eval_tables
from classify.transforms import Normalize
from tests import tinynet
from tests.conftest import tiny_args as tiny
from tests.conftest import train_in_process as train
from tools import avg_checkpoints, export_onnx, predict

CPU, FP32 = torch.device("cpu"), AmpSettings(False, None, None)


class _Colour(nn.Module):
    """Predicts the dominant colour: logits = the mean of the (blue, green, red) channels."""

    def forward(self, x):
        return x.mean(dim=(2, 3))[:, [2, 1, 0]]


def _solid(rgb, n=1):
    return torch.tensor(rgb, dtype=torch.uint8).view(1, 3, 1, 1).expand(n, 3, 4, 4).contiguous()


def test_tta_flip_is_the_mean_of_both_logits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()  # not mirror-symmetric
    images = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        plain, mirrored = model(images), model(images.flip(3))
        flip = tta_logits(model, images, device=CPU, amp=FP32, tta="flip")
        none = tta_logits(model, images, device=CPU, amp=FP32)
    assert torch.equal(none, plain) and not torch.allclose(plain, mirrored)
    assert torch.allclose(flip, (plain + mirrored) / 2, atol=1e-6)
    # through evaluate: the loss is that of the mean logits
    raw = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    normalize = Normalize((0.5,) * 3, (0.5,) * 3)
    stats = evaluate(model, [(raw, target, 0)], device=CPU, amp=FP32, normalize=normalize, tta="flip")
    with torch.no_grad():
        x = normalize(raw)
        mean = (model(x) + model(x.flip(3))) / 2
    assert stats["loss"] == pytest.approx(nn.functional.cross_entropy(mean, target).item(), rel=1e-5)


def test_confusion_and_per_class_tables_on_a_known_set(tmp_path):
    # classes: blue, green, red; 3 blue images (one of them red: predicted red), 2 green, 1 red
    blue, green, red = (0, 0, 250), (0, 250, 0), (250, 0, 0)
    images = torch.cat([_solid(blue, 2), _solid(red), _solid(green, 2), _solid(red)])
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    batches = [(images[:4], target[:4], 0), (images[4:], target[4:], 0)]
    stats = evaluate(_Colour(), batches, device=CPU, amp=FP32, normalize=Normalize((0.0,) * 3, (1.0,) * 3),
                     num_classes=3)
    assert stats["confusion"].tolist() == [[2, 0, 1], [0, 2, 0], [0, 0, 1]]
    assert stats["acc1"] == pytest.approx(500 / 6)
    write_eval_tables(tmp_path, stats["confusion"], ["blue", "green", "red"])
    assert (tmp_path / "confusion.csv").read_text() == ("true \\ predicted,blue,green,red\n"
                                                        "blue,2,0,1\ngreen,0,2,0\nred,0,0,1\n")
    assert (tmp_path / "per_class.csv").read_text() == ("index,class,images,correct,acc1,predicted,precision\n"
                                                        "0,blue,3,2,66.667,2,100.000\n"
                                                        "1,green,2,2,100.000,2,100.000\n"
                                                        "2,red,1,1,100.000,2,50.000\n")


@pytest.fixture(scope="module")
def run(image_folder, tmp_path_factory):
    """A 4-epoch tinynet run that keeps its 4 epoch checkpoints, with EMA."""
    tinynet.register()
    out = tmp_path_factory.mktemp("avg_run")
    code = main.main([str(image_folder), "-a", "tinynet", "-b", "8", "--workers", "0", "-p", "100", "--epochs", "4",
                      "--keep-checkpoints", "4", "--model-ema", "--model-ema-steps", "1", "--output-dir", str(out)])
    assert code == 0
    return out


def _rows(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_every_evaluation_writes_the_tables(run, image_folder, tmp_path, capsys):
    # the training run's last evaluation
    summary = json.loads((run / "summary.json").read_text())
    per_class = _rows(run / "eval" / "per_class.csv")
    assert [r[1] for r in per_class[1:]] == ["blue", "green", "red"] and [r[2] for r in per_class[1:]] == ["7"] * 3
    assert sum(int(r[3]) for r in per_class[1:]) / 21 * 100 == pytest.approx(summary["final_acc1"], abs=1e-3)
    # -e with --tta flip and a test-time size, into a new folder
    out = tmp_path / "e"
    log = train(capsys, *tiny(image_folder, out, "-e", "--resume", run / "checkpoint.pth.tar", "--tta", "flip",
                              "--val-resize-size", "40", "--val-crop-size", "36"))
    acc = float(next(line for line in log.splitlines() if line.startswith(" * Acc@1")).split()[2])
    evaluated = json.loads((out / "summary.json").read_text())
    assert evaluated["tta"] == "flip" and json.loads((out / "config.json").read_text())["data"]["val_crop_size"] == 36
    confusion = _rows(out / "eval" / "confusion.csv")
    assert confusion[0] == ["true \\ predicted", "blue", "green", "red"]
    counts = [[int(v) for v in row[1:]] for row in confusion[1:]]
    assert sum(map(sum, counts)) == 21
    assert sum(counts[i][i] for i in range(3)) / 21 * 100 == pytest.approx(acc, abs=1e-3)


def test_average_checkpoints_is_the_hand_computed_mean(tmp_path, capsys):
    def ckpt(name, w, count, ema):
        state = {"state_dict": {"fc.weight": torch.tensor(w), "bn.num_batches_tracked": torch.tensor(count)},
                 "state_dict_ema": {"fc.weight": torch.tensor(ema), "bn.num_batches_tracked": torch.tensor(count)},
                 "arch": "tinynet", "classes": ["a", "b"], "epoch": count}
        save_atomic(state, tmp_path / name)
        return tmp_path / name

    paths = [ckpt("a.pth.tar", [1.0, 2.0], 10, [0.5]), ckpt("b.pth.tar", [2.0, 4.0], 20, [1.0]),
             ckpt("c.pth.tar", [4.0, 9.0], 21, [3.0])]
    assert avg_checkpoints.main([str(tmp_path / "avg.pth.tar"), *map(str, paths)]) == 0
    out = load_checkpoint(tmp_path / "avg.pth.tar")
    assert out["state_dict"]["fc.weight"].tolist() == pytest.approx([7 / 3, 5.0])
    assert out["state_dict_ema"]["fc.weight"].tolist() == pytest.approx([1.5])
    count = out["state_dict"]["bn.num_batches_tracked"]
    assert count.dtype == torch.int64 and count.item() == 17  # 51 / 3, as timm's mean loads into the buffer
    assert out["epoch"] == 21 and "optimizer" not in out
    # nothing overwritten; mismatched files refused in one line
    assert avg_checkpoints.main([str(tmp_path / "avg.pth.tar"), *map(str, paths)]) == 2
    assert "exists; pass a new file name" in capsys.readouterr().err
    save_atomic({"state_dict": {"fc.weight": torch.zeros(3)}, "arch": "tinynet"}, tmp_path / "d.pth.tar")
    assert avg_checkpoints.main([str(tmp_path / "x.pth.tar"), str(paths[0]), str(tmp_path / "d.pth.tar")]) == 2
    assert "hold different layers" in capsys.readouterr().err


def test_average_the_last_epochs_and_use_the_result(run, image_folder, tmp_path, capsys):
    avg = tmp_path / "avg.pth.tar"
    assert avg_checkpoints.main([str(avg), "--last", "2", str(run)]) == 0
    assert "(checkpoint-2.pth.tar, checkpoint-3.pth.tar)" in capsys.readouterr().out
    two = [load_checkpoint(run / f"checkpoint-{e}.pth.tar") for e in (2, 3)]
    out = load_checkpoint(avg)
    for key in ("state_dict", "state_dict_ema"):
        for name, value in out[key].items():
            if value.is_floating_point():
                assert torch.allclose(value, (two[0][key][name].double() + two[1][key][name].double()).div(2).float())
    assert avg_checkpoints.main([str(tmp_path / "x.pth.tar"), "--last", "5", str(run)]) == 2
    assert "holds 4 checkpoint-<epoch>.pth.tar files, fewer than --last 5; pass --last 4" in capsys.readouterr().err
    # -e (--resume and --pretrained), a new run from it, predict and the export's loader accept it
    for flag in ("--resume", "--pretrained"):
        log = train(capsys, *tiny(image_folder, tmp_path / f"e{flag}", "-e", flag, avg))
        assert " * Acc@1" in log
    log = train(capsys, *tiny(image_folder, tmp_path / "ft", "--pretrained", avg, "--epochs", "1"))
    assert f"=> pretrained weights from {avg}: every layer loaded" in log
    assert predict.main(["--checkpoint", str(avg), str(image_folder / "val" / "red"), "--tta", "flip"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 7
    assert load_trained_model(avg, ema=True).classes == ["blue", "green", "red"]
    if all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        assert export_onnx.main(["--checkpoint", str(avg), "--output", str(tmp_path / "avg.onnx")]) == 0
