"""tools/predict.py, tools/export_onnx.py, tools/plot.py, classify.inference and classify.plots.

One tinynet trained for an epoch feeds predict, export and plot. Each tool runs once as a
real ``python tools/x.py`` subprocess (sys.path, exit code, one-line errors); the rest runs
in-process to keep the file fast. The subprocesses that need no trained run start when the
module starts (conftest's ``start_ahead``) and run beside the in-process tests. ONNX and
plot tests skip when the optional packages (onnx + onnxruntime, matplotlib) are missing.
AlexNet and VGG16 parity exports ~200/500 MB of weights (tens of seconds on 2 cores): they
run with RUN_SLOW=1.
"""

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import main
import models
from classify import inference
from classify.checkpoint import load_checkpoint, save_atomic
from classify.errors import CheckpointError
from tests import tinynet
from tests.conftest import Background, assert_one_line_error, tool_env
from tools import export_onnx, plot, predict

ROOT = Path(__file__).resolve().parent.parent
PRED_LINE = re.compile(r"^(?P<path>.+): (?P<top>.+)$")
ENTRY = re.compile(r"^(?P<name>.+) \((?P<p>\d+\.\d\d)%\)$")
slow = pytest.mark.skipif(not os.environ.get("RUN_SLOW"), reason="slow (large weights): set RUN_SLOW=1")


def start_tool(tool, *args) -> Background:
    return Background([sys.executable, f"tools/{tool}.py", *args], cwd=ROOT,
                      env=tool_env(dict(os.environ, PYTHONUNBUFFERED="1")))


def run_tool(tool, *args, timeout=300) -> subprocess.CompletedProcess:
    return start_tool(tool, *args).result(timeout)


START_AHEAD = ("predict_missing_checkpoint", "googlenet_export")  # conftest's _start_ahead


@pytest.fixture(scope="module")
def predict_missing_checkpoint(tmp_path_factory):
    """``tools/predict.py`` with a checkpoint that does not exist."""
    proc = start_tool("predict", "--checkpoint", tmp_path_factory.mktemp("predict") / "missing.pth.tar",
                      ROOT / "tests" / "conftest.py")
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def googlenet_export(tmp_path_factory):
    """``tools/export_onnx.py`` on a GoogLeNet checkpoint trained with aux heads."""
    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime")):
        yield None  # the test skips
        return
    tmp = tmp_path_factory.mktemp("googlenet_export")
    net = models.create_model("googlenet", num_classes=4, aux_logits=True)
    ckpt = tmp / "googlenet.pth.tar"
    save_atomic({"state_dict": net.state_dict(), "arch": "googlenet", "recipe": "googlenet_modelzoo",
                 "classes": ["a", "b", "c", "d"],
                 "args": {"image_size": 32, "val_resize": 36, "model_kwargs": {"aux_logits": True}}}, ckpt)
    proc = start_tool("export_onnx", "--checkpoint", ckpt, "--output", tmp / "g.onnx", "--dynamic-batch")
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def trained(image_folder, tmp_path_factory):
    """A 1-epoch tinynet run: checkpoints (with class names) and metrics.jsonl."""
    tinynet.register()
    out = tmp_path_factory.mktemp("tools_run")
    code = main.main([str(image_folder), "-a", "tinynet", "-b", "8", "--workers", "0", "--epochs", "1",
                      "-p", "100", "--output-dir", str(out)])
    assert code == 0
    return out


def parse_predictions(text):
    rows = []
    for line in text.splitlines():
        m = PRED_LINE.match(line)
        assert m, line
        entries = [ENTRY.match(e) for e in m["top"].split(", ")]
        assert all(entries), line
        rows.append((m["path"], [(e["name"], float(e["p"])) for e in entries]))
    return rows


# ---------------------------------------------------------------- predict

def test_predict_files_and_folders(trained, image_folder, tmp_path, capsys):
    folder = tmp_path / "imgs"
    for sub, colour in (("a", "red"), ("b/deeper", "green")):
        (folder / sub).mkdir(parents=True)
        shutil.copy(image_folder / "val" / colour / "000.jpg", folder / sub / "x.jpg")
    shutil.copy(image_folder / "val" / "blue" / "000.jpg", folder / ".hidden.jpg")  # skipped
    (folder / ".cache").mkdir()
    shutil.copy(image_folder / "val" / "blue" / "000.jpg", folder / ".cache" / "y.jpg")  # skipped
    (folder / "notes.txt").write_text("not an image")  # not an image extension: skipped
    (folder / "broken.jpg").write_bytes(b"not a jpeg")  # unreadable: warning, continue
    single = image_folder / "val" / "blue" / "001.jpg"

    code = predict.main(["--checkpoint", str(trained / "model_best.pth.tar"), str(single), str(folder),
                         "-b", "2", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = parse_predictions(out.out)
    assert [Path(p) for p, _ in rows] == [single, folder / "a" / "x.jpg", folder / "b" / "deeper" / "x.jpg"]
    for _, top in rows:
        assert len(top) == 3  # min(--topk 5, 3 classes)
        assert sorted(name for name, _ in top) == ["blue", "green", "red"]  # names stored in the checkpoint
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(100.0, abs=0.05)
    warnings = [line for line in out.err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipping") and "broken.jpg" in warnings[0]


def test_predict_agrees_with_evaluation(trained, image_folder, capsys):
    """Same preprocessing as the trainer's validation: top-1 accuracy equals the run's Acc@1."""
    code = predict.main(["--checkpoint", str(trained / "model_best.pth.tar"), str(image_folder / "val"),
                         "--topk", "1", "-b", "8"])
    rows = parse_predictions(capsys.readouterr().out)
    assert code == 0 and len(rows) == 21 and all(len(top) == 1 for _, top in rows)
    acc1 = 100.0 * sum(top[0][0] == Path(path).parent.name for path, top in rows) / len(rows)
    assert acc1 == pytest.approx(json.loads((trained / "summary.json").read_text())["best_acc1"], abs=1e-3)


def test_predict_without_class_names_prints_indices(trained, image_folder, tmp_path, capsys):
    state = load_checkpoint(trained / "model_best.pth.tar")
    bare = tmp_path / "bare.pth"
    torch.save(state["state_dict"], bare)  # a bare state_dict: no arch, args or classes
    code = predict.main(["--checkpoint", str(bare), "--arch", "tinynet", "--topk", "2",
                         str(image_folder / "val" / "red" / "000.jpg")])
    rows = parse_predictions(capsys.readouterr().out)
    assert code == 0 and len(rows) == 1 and {name for name, _ in rows[0][1]} <= {"0", "1", "2"}


def test_predict_errors(trained, predict_missing_checkpoint, tmp_path, capsys):
    ckpt = str(trained / "model_best.pth.tar")
    result = predict_missing_checkpoint.result()
    assert_one_line_error(result.returncode, result.stderr, "not found")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    for argv, match in (([str(tmp_path / "empty")], "no images found"),
                        ([str(tmp_path / "nope.jpg")], "not found"),
                        ([str(tmp_path / "bad.jpg")], "could be read")):
        code = predict.main(["--checkpoint", ckpt, *argv])
        err = capsys.readouterr().err
        err = "\n".join(line for line in err.splitlines() if not line.startswith("warning:"))
        assert_one_line_error(code, err, match)


# ---------------------------------------------------------------- classify.inference

def test_googlenet_trained_with_aux_heads_loads_without_them(tmp_path):
    """The inference model is built with entry.inference_build_kwargs(the run's model_kwargs)."""
    net = models.create_model("googlenet", num_classes=4, aux_logits=True)
    ckpt = tmp_path / "g.pth.tar"
    save_atomic({"state_dict": net.state_dict(), "arch": "googlenet", "recipe": "googlenet_modelzoo",
                 "classes": ["a", "b", "c", "d"],
                 "args": {"image_size": 32, "val_resize": 36, "model_kwargs": {"aux_logits": True}}}, ckpt)
    loaded = inference.load_trained_model(ckpt)
    entry = models.get_model_entry("googlenet")
    assert entry.inference_build_kwargs({"aux_logits": True}) == {"aux_logits": False}
    assert not loaded.model.training and loaded.num_classes == 4 and loaded.image_size == 32
    assert not any(entry.is_optional_key(k) for k in loaded.model.state_dict())  # no aux heads
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.fc.weight, net.fc.weight)
        assert loaded.model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_bare_googlenet_state_dict_with_arch(tmp_path):
    """No arch, args or classes: the arch is --arch's, the width the classifier's (aux heads skipped)."""
    net = models.create_model("googlenet", num_classes=6, aux_logits=True)
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, bare)  # as DDP saves it
    loaded = inference.load_trained_model(bare, arch="googlenet")
    assert loaded.arch == "googlenet" and loaded.num_classes == 6 and loaded.classes == []
    assert (loaded.image_size, loaded.val_resize) == (224, 256)  # its default recipe's
    with pytest.raises(CheckpointError, match="does not name its network; pass --arch"):
        inference.load_trained_model(bare)


class _WithHead(nn.Module):
    """A test-only net whose training-only head is registered after the classifier."""

    def __init__(self, num_classes=1000, head=False):
        super().__init__()
        self.body = tinynet.build(num_classes=num_classes)
        self.head = nn.Linear(16, 7) if head else None

    def forward(self, x):
        return self.body(x)


def test_any_net_declares_its_inference_model(tmp_path):
    """Nothing network-specific in classify.inference: the entry's inference_kwargs and
    optional_keys decide (here a head whose 2-D weight comes last in the state_dict)."""
    recipe = dataclasses.replace(tinynet.RECIPE, name="tinyhead_test", arch="tinyhead")
    models.register_model(models.ModelEntry(
        name="tinyhead", build=_WithHead, recipes={recipe.name: recipe}, default_recipe=recipe.name,
        min_image_size=8, optional_keys=("head.",), inference_kwargs={"head": False}))
    try:
        bare = tmp_path / "bare.pth"
        torch.save(_WithHead(num_classes=3, head=True).state_dict(), bare)
        loaded = inference.load_trained_model(bare, arch="tinyhead")
        assert loaded.num_classes == 3 and loaded.model.head is None and loaded.image_size == 32
        model = inference.build_inference_model("tinyhead", num_classes=5, train_kwargs={"head": True})
        assert model.head is None and not model.training
    finally:
        models.unregister_model("tinyhead")


# ---------------------------------------------------------------- ONNX export

def test_fixed_adaptive_pool_matches_pytorch():
    for (h, w), out in (((1, 1), (6, 6)), ((7, 5), (3, 2)), ((13, 13), (6, 6)), ((2, 3), (7, 7))):
        x = torch.randn(2, 4, h, w)
        pool = export_onnx.FixedAdaptiveAvgPool2d((h, w), out)
        torch.testing.assert_close(pool(x), torch.nn.functional.adaptive_avg_pool2d(x, out))


def test_export_checkpoint_dynamic_batch(trained, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import onnx

    out = tmp_path / "tiny.onnx"
    code = export_onnx.main(["--checkpoint", str(trained / "model_best.pth.tar"), "--output", str(out),
                             "--dynamic-batch"])
    log = capsys.readouterr().out
    assert code == 0, log
    assert "batch 1: onnxruntime vs PyTorch max abs diff" in log and "batch 3:" in log
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["classes"]) == ["blue", "green", "red"] and meta["image_size"] == "32"


def test_export_googlenet_main_head_cli(googlenet_export):
    """A GoogLeNet checkpoint trained with aux heads exports the main head, through the CLI."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    result = googlenet_export.result()
    assert result.returncode == 0, result.stderr
    assert "[batch, 3, 32, 32]" in result.stdout and "output 'logits' [batch, 4]" in result.stdout
    assert "onnx.checker OK; onnxruntime matches PyTorch" in result.stdout and "batch 3:" in result.stdout


@pytest.mark.parametrize("arch,size", [
    pytest.param("inception_resnet_v2", 75, marks=pytest.mark.slow),
    pytest.param("alexnet", 63, marks=slow),  # 218 MB of weights at 10 classes
    pytest.param("vgg16", 32, marks=slow),  # 512 MB
])
def test_export_parity(arch, size, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    net = export_onnx.random_model(arch, num_classes=10)
    path = tmp_path / f"{arch}.onnx"
    export_onnx.export(net, path, size)
    assert export_onnx.verify(net, path, size, [1]) <= 1e-4


def test_verify_catches_a_mismatch(trained, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    net = inference.load_trained_model(trained / "model_best.pth.tar")
    path = tmp_path / "tiny.onnx"
    export_onnx.export(net, path, 32)
    with torch.no_grad():
        net.model[-1].bias.add_(1.0)  # PyTorch side changes after export
    with pytest.raises(export_onnx.ExportFailed, match="differs from PyTorch"):
        export_onnx.verify(net, path, 32, [1])


def test_export_errors(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "x.onnx"
    for argv, match in ((["--arch", "resnet9000"], "unknown --arch"),
                        (["--checkpoint", str(tmp_path / "nope.pth")], "not found"),
                        (["--arch", "googlenet", "--image-size", "16"], "too small"),
                        (["--arch", "googlenet", "--opset", "30"], "--opset 30")):
        code = export_onnx.main([*argv, "--output", str(out)])
        assert_one_line_error(code, capsys.readouterr().err, match)
    assert not out.exists()


def test_export_without_onnxruntime(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    code = export_onnx.main(["--checkpoint", str(trained / "model_best.pth.tar"), "--output",
                             str(tmp_path / "x.onnx")])
    assert_one_line_error(code, capsys.readouterr().err, "pip install onnx onnxruntime")
    assert not (tmp_path / "x.onnx").exists()


# ---------------------------------------------------------------- plots

def test_write_curves(trained, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from classify.plots import write_curves

    assert (trained / "curves.png").is_file()  # the trainer draws it after each epoch
    png = tmp_path / "curves.png"
    assert write_curves(trained / "metrics.jsonl", png) is True
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (1200, 800)
    metrics = tmp_path / "metrics.jsonl"  # a resumed run (epoch 1 twice) and a half-written last line
    records = [dict(epoch=e, lr=0.1 / (e + 1), train_loss=1.0, train_acc1=50.0, val_loss=1.1, acc1=40.0 + e,
                    acc5=90.0, img_per_s=100.0, epoch_time_s=1.0) for e in (0, 1, 1, 2)]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"epoch": 3, "lr"')
    assert write_curves(metrics, png) is True
    with pytest.warns(RuntimeWarning):
        assert write_curves(tmp_path / "missing.jsonl", png) is False  # never raises


def test_plots_without_matplotlib(trained, tmp_path, capsys, monkeypatch):
    from classify.plots import write_curves

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    assert write_curves(trained / "metrics.jsonl", tmp_path / "c.png") is False  # training goes on
    code = plot.main([str(trained), "--output", str(tmp_path / "c.png")])
    assert_one_line_error(code, capsys.readouterr().err, "pip install matplotlib")
    assert not (tmp_path / "c.png").exists()


def test_plot_cli(trained, tmp_path):
    pytest.importorskip("matplotlib")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(trained / "metrics.jsonl", other / "metrics.jsonl")
    result = run_tool("plot", trained, other, "--output", tmp_path / "both.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "both.png").stat().st_size > 10_000 and "2 runs" in result.stdout


def test_plot_errors(trained, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for argv, match in (([tmp_path / "nope"], "not found"),
                        ([tmp_path], "has no metrics.jsonl"),
                        ([trained, "--output", tmp_path / "no" / "dir.png"], "does not exist")):
        code = plot.main([str(a) for a in argv])
        assert_one_line_error(code, capsys.readouterr().err, match)
