"""Issue #24, time to accuracy: the <net>_fast recipes and their levers (linear-to-zero schedule,
relative progressive resizing / eval size / warm-up, flip TTA, BlurPool), per-network CPU
defaults, pre-resized data (tools/resize_dataset.py, make_shards --max-side) and the seeds'
per-step performance lines."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision
from PIL import Image

import main
import models
from classify.amp import AmpSettings
from classify.blurpool import apply_blurpool, blur, blurred_layers
from classify.resolve import build_config
from classify.data.stored import larger_crop_note, stored_max_side
from classify.errors import UserError
from classify.fast import net_defaults
from classify.loop import evaluate
from classify.schedules import SCHEDULES, build_scheduler, lr_factor
from classify.transforms import Normalize
from tests.conftest import ROOT, launcher_env, launcher_output, tiny_args, tool_env, train_in_process, write_image_folder

REAL_NETS = [n for n in models.list_models() if not n.startswith("tiny")]


def _cfg(*argv):
    return build_config(main.get_args_parser().parse_args([str(a) for a in argv]))


# ----------------------------------------------------------------------------- the linear schedule


def test_linear_schedule_hand_computed():
    assert "linear" in SCHEDULES
    # 10 epochs, 2 of warm-up: the seeds' linear warm-up from ~0, then 1 -> 0 over the other 8
    assert lr_factor("linear", 1.0, 10, warmup_epochs=2) == pytest.approx((1.0 + 1e-3) / 2)
    assert lr_factor("linear", 2.0, 10, warmup_epochs=2) == pytest.approx(1.0)
    assert lr_factor("linear", 4.0, 10, warmup_epochs=2) == pytest.approx(0.75)
    assert lr_factor("linear", 8.0, 10, warmup_epochs=2) == pytest.approx(0.25)
    assert lr_factor("linear", 10.0, 10, warmup_epochs=2) == 0.0
    assert lr_factor("linear", 5.0, 10) == pytest.approx(0.5)  # without warm-up


def test_linear_schedule_reaches_zero_at_the_budgets_end():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    sched = build_scheduler(opt, name="linear", epochs=3, steps_per_epoch=5, warmup_epochs=1)
    lrs = []
    for _ in range(15):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[-1] == 0.0 and max(lrs) == pytest.approx(0.4)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # monotone after the warm-up


def test_linear_is_a_flag_for_any_recipe():
    cfg = _cfg("-a", "alexnet", "--lr-scheduler", "linear", "--epochs", "4")
    assert cfg.recipe == "alexnet_modelzoo" and cfg.optim.lr_scheduler == "linear"


# ----------------------------------------------------------------------------- the fast recipes


@pytest.mark.parametrize("net", REAL_NETS)
def test_every_network_has_a_fast_recipe(net):
    recipe = models.get_recipe(f"{net}_fast")
    assert recipe.arch == net and recipe.lr_scheduler == "linear" and recipe.label_smoothing > 0


@pytest.mark.parametrize("net", REAL_NETS)
def test_fast_recipe_resolves_relative_to_the_run(net, tmp_path):
    seed = models.get_recipe(models.default_recipe(net))
    cfg = _cfg(tmp_path, "--recipe", f"{net}_fast", "--epochs", "16")
    o, lv, d = cfg.optim, cfg.levers, cfg.data
    size = seed.image_size
    assert (o.epochs, o.lr_scheduler, o.label_smoothing) == (16, "linear", 0.1)
    assert o.warmup_epochs == 2.0  # 16 / 8
    assert (o.lr, o.batch_size) == (pytest.approx(seed.lr_1p), seed.batch_size_1p)  # the seed's lr and batch
    assert lv.norm_weight_decay == 0.0 and lv.bias_weight_decay == 0.0 and cfg.loop.tta == "flip"
    assert lv.progressive_resize == (round(0.625 * size), size, 9, 13)  # floor(0.65 x 15), ceil(0.85 x 15)
    assert d.image_size == size and d.val_crop_size == round(size * 8 / 7) > size  # test at a higher resolution
    assert lv.model_ema == (net in ("googlenet", "inception_resnet_v2")) and lv.blurpool is False
    # hand computation of the lr at chosen epochs (warm-up 2, then linear to 0 at 16)
    for epoch, factor in ((1.0, (1.0 + 1e-3) / 2), (2.0, 1.0), (9.0, 0.5), (16.0, 0.0)):
        assert lr_factor(o.lr_scheduler, epoch, o.epochs, warmup_epochs=o.warmup_epochs) == pytest.approx(factor)


def test_fast_recipe_flags_win_and_fit_small_images(tmp_path):
    cfg = _cfg(tmp_path, "--recipe", "alexnet_fast", "--epochs", "3", "--image-size", "64", "--tta", "none",
               "--val-crop-size", "64", "--progressive-resize", "64:64")
    assert cfg.loop.tta == "none" and cfg.data.val_crop_size == 64 and cfg.levers.progressive_resize[:2] == (64, 64)
    zero = _cfg(tmp_path, "--recipe", "alexnet_fast", "--warmup-epochs", "0", "--norm-weight-decay", "0.0001")
    assert zero.optim.warmup_epochs == 0 and zero.levers.norm_weight_decay == 0.0001  # 0 is a value, not "not given"
    cfg = _cfg(tmp_path, "--recipe", "alexnet_fast", "--epochs", "3", "--image-size", "64")
    assert cfg.levers.progressive_resize is None  # no epochs below 128 px: a 64 px run trains at 64 throughout
    cfg = _cfg(tmp_path, "--recipe", "googlenet_fast", "--epochs", "8", "--image-size", "160")
    assert cfg.levers.progressive_resize == (128, 160, 4, 6)  # 0.625 x 160 = 100 raised to 128
    seed = _cfg(tmp_path, "-a", "alexnet")  # the seeds' recipes set none of it
    assert seed.loop.tta == "none" and seed.levers.progressive_resize is None and seed.data.val_crop_size == 224


def test_tta_flag_values(tmp_path):
    assert _cfg(tmp_path, "--tta", "flip").loop.tta == "flip"
    with pytest.raises(UserError, match="unknown --tta 'mirror'"):
        _cfg(tmp_path, "--tta", "mirror")


def test_flip_tta_averages_the_mirrors_logits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    target = torch.arange(6) % 5
    normalize = Normalize((0.5,) * 3, (0.25,) * 3)
    amp = AmpSettings(False, None, None)
    loader = [(images, target, 0)]
    plain = evaluate(model, loader, device=torch.device("cpu"), amp=amp, normalize=normalize)
    tta = evaluate(model, loader, device=torch.device("cpu"), amp=amp, normalize=normalize, tta="flip")
    x = normalize(images)
    logits = (model(x) + model(x.flip(3))) / 2
    expected = nn.functional.cross_entropy(logits, target).item()
    assert tta["loss"] == pytest.approx(expected, rel=1e-5) and tta["loss"] != pytest.approx(plain["loss"])


def test_fast_recipe_trains_with_its_levers_on_tinynet(image_folder, tmp_path, capsys):
    """A recipe's levers on any net: tinynet with the fast levers as flags, TTA at the last eval only."""
    out = train_in_process(capsys, *tiny_args(image_folder, tmp_path, "--epochs", "2", "--lr-scheduler", "linear",
                                             "--tta", "flip", "--blurpool", "--progressive-resize", "24:32"))
    assert out.count(" * Acc@1 ") == 2
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["lr"] == 0.0  # linear to zero at the budget's end


# ----------------------------------------------------------------------------- BlurPool


def _torchvision_twin(net):
    builders = {"alexnet": torchvision.models.alexnet, "vgg16": torchvision.models.vgg16,
                "googlenet": lambda **kw: torchvision.models.googlenet(aux_logits=False, init_weights=False, **kw)}
    return builders[net](weights=None, num_classes=10)


@pytest.mark.parametrize("net", ["alexnet", pytest.param("vgg16", marks=pytest.mark.slow), "googlenet",
                                 pytest.param("inception_resnet_v2", marks=pytest.mark.slow)])  # slow: large nets
def test_blurpool_keeps_the_state_dict_and_strict_loads(net):
    plain = models.create_model(net, num_classes=10)
    blurred = apply_blurpool(models.create_model(net, num_classes=10))
    assert blurred_layers(blurred) > 0
    assert list(blurred.state_dict()) == list(plain.state_dict())
    assert not list(blurred.parameters())[len(list(plain.parameters())):] and len(list(blurred.buffers())) == len(
        list(plain.buffers()))
    if net == "inception_resnet_v2":
        timm = pytest.importorskip("timm")
        twin = timm.create_model("inception_resnet_v2", pretrained=False, num_classes=10)
    else:
        twin = _torchvision_twin(net)
    twin.load_state_dict(blurred.state_dict(), strict=True)
    blurred.load_state_dict(twin.state_dict(), strict=True)


def test_a_blurpool_checkpoint_is_served_with_its_blur(image_folder, tmp_path, capsys, monkeypatch):
    """tools/predict.py and export_onnx.py (classify.inference) rebuild the blur a --blurpool run trained with."""
    import classify.blurpool
    from classify.inference import load_trained_model

    monkeypatch.setattr(classify.blurpool, "MIN_CHANNELS", 1)  # tinynet's strided convs have 3 and 8 inputs

    train_in_process(capsys, *tiny_args(image_folder, tmp_path, "--epochs", "1", "--blurpool"))
    saved = torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)
    assert saved["args"]["blurpool"] is True
    plain = models.create_model("tinynet", num_classes=3)
    assert list(saved["state_dict"]) == list(plain.state_dict())  # no key of its own
    plain.load_state_dict(saved["state_dict"], strict=True)
    loaded = load_trained_model(tmp_path / "checkpoint.pth.tar")
    assert blurred_layers(loaded.model) == blurred_layers(apply_blurpool(plain)) == 2


def test_blurpool_blurs_before_the_strided_layers_and_keeps_sizes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, stride=2, padding=1),
                          nn.MaxPool2d(2))
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    apply_blurpool(model)
    apply_blurpool(model)  # idempotent
    assert blurred_layers(model) == 2  # the strided conv (16 input channels) and the strided max-pool
    after = model(x)
    assert after.shape == before.shape and not torch.allclose(after, before)
    stem = nn.Conv2d(3, 8, 3, stride=2)  # the RGB stem keeps its input (FFCV's and Composer's rule)
    apply_blurpool(stem)
    assert blurred_layers(stem) == 0
    # the binomial filter [1, 2, 1] x [1, 2, 1] / 16 per channel with zero padding, in either memory format
    x = torch.randn(2, 16, 7, 9)
    k = torch.tensor([1.0, 2.0, 1.0])
    weight = (k[:, None] * k[None, :] / 16).expand(16, 1, 3, 3)
    expected = nn.functional.conv2d(x, weight, padding=1, groups=16)
    assert torch.allclose(blur(x), expected, atol=1e-6)
    nhwc = blur(x.contiguous(memory_format=torch.channels_last))
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and torch.allclose(nhwc, expected, atol=1e-6)


# ----------------------------------------------------------------------------- per-network CPU defaults


def test_per_network_cpu_defaults_resolve_as_stated():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    alexnet = models.get_model_entry("alexnet")
    assert alexnet.cpu_channels_last is False
    got = net_defaults(cpu, channels_last=None, amp_dtype="auto", amp_asked=False,
                       cpu_channels_last=alexnet.cpu_channels_last, cpu_amp_dtype=alexnet.cpu_amp_dtype)
    assert got.channels_last is False and "NCHW" in got.source
    flag = net_defaults(cpu, channels_last=True, amp_dtype="auto", amp_asked=False, cpu_channels_last=False,
                        cpu_amp_dtype="fp32")
    assert flag.channels_last is True and flag.amp_dtype == "fp32" and flag.source == "fp32"
    asked = net_defaults(cpu, channels_last=None, amp_dtype="auto", amp_asked=True, cpu_channels_last=None,
                         cpu_amp_dtype="fp32")
    assert asked.amp_dtype == "auto" and asked.source == ""  # --amp asks for autocast: the entry does not undo it
    gpu = net_defaults(cuda, channels_last=None, amp_dtype="auto", amp_asked=False, cpu_channels_last=False,
                       cpu_amp_dtype="fp32")
    assert gpu == (None, "auto", "")
    for net in ("vgg16", "googlenet", "inception_resnet_v2"):
        entry = models.get_model_entry(net)
        assert (entry.cpu_channels_last, entry.cpu_amp_dtype) == (None, None)  # the engine's defaults pay there


# ----------------------------------------------------------------------------- pre-resized data


def _photo_tree(root: Path) -> Path:
    """2 classes x (2 large + 1 small) JPEGs per split, and one non-image file."""
    for split in ("train", "val"):
        for c, colour in enumerate(((200, 30, 30), (30, 30, 200))):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i, size in enumerate(((500, 375), (375, 500), (64, 48))):
                Image.new("RGB", size, colour).save(folder / f"{i}.jpg", quality=95)
    (root / "LICENSE.txt").write_text("test data\n")
    return root


def _tree(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_resize_dataset_keeps_files_labels_and_resumes(tmp_path):
    from classify.data.folder import SafeImageFolder
    from tools.resize_dataset import resize_dataset

    src, dst = _photo_tree(tmp_path / "src"), tmp_path / "dst"
    record = resize_dataset(str(src), str(dst), max_side=128, quality=90, workers=1)
    assert (record["files"], record["resized"], record["copied"]) == (13, 8, 5)
    assert _tree(dst) == sorted(_tree(src) + ["resize.json"])
    for split in ("train", "val"):
        a, b = SafeImageFolder(src / split), SafeImageFolder(dst / split)
        labels = [[d.table[i][1] for i in range(len(d))] for d in (a, b)]
        assert a.classes == b.classes and labels[0] == labels[1] and len(a) == len(b) == 6
    sizes = {p.name: Image.open(p).size for p in (dst / "train" / "class0").iterdir()}
    assert sizes == {"0.jpg": (128, 96), "1.jpg": (96, 128), "2.jpg": (64, 48)}
    assert (dst / "train/class0/2.jpg").read_bytes() == (src / "train/class0/2.jpg").read_bytes()
    assert stored_max_side(str(dst)) == (128, str(dst / "resize.json"))
    assert stored_max_side(str(dst / "train"))[0] == 128  # a split folder: the record above it
    # an interrupted run: a stale temp file, a missing image, no resize.json -> the same command completes it
    (dst / "resize.json").unlink()
    (dst / "val/class1/0.jpg").unlink()
    (dst / "val/class1/.0.jpg.k2j4x9.tmp").write_bytes(b"half")  # classify.atomic's temp name
    again = resize_dataset(str(src), str(dst), max_side=128, quality=90, workers=2)
    assert (again["kept"], again["resized"]) == (12, 1) and _tree(dst) == sorted(_tree(src) + ["resize.json"])
    assert not list(dst.rglob("*.tmp"))
    with pytest.raises(UserError, match="other settings"):
        resize_dataset(str(src), str(dst), max_side=64, quality=90, workers=1)


@pytest.mark.slow  # the slow tier (-m slow): the tool in subprocesses
def test_resize_dataset_command_line(tmp_path):
    src = _photo_tree(tmp_path / "src")
    proc = subprocess.run([sys.executable, ROOT / "tools" / "resize_dataset.py", src, tmp_path / "dst",
                           "--max-side", "100", "--workers", "1"], capture_output=True, text=True, timeout=120,
                          env=tool_env())
    assert proc.returncode == 0, proc.stderr
    assert "13 files, 8 re-encoded at --max-side 100" in proc.stdout
    bad = subprocess.run([sys.executable, ROOT / "tools" / "resize_dataset.py", src, tmp_path / "x",
                          "--max-side", "0"], capture_output=True, text=True, timeout=120, env=tool_env())
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")


def test_make_shards_max_side_records_it(tmp_path):
    pytest.importorskip("webdataset")
    import tarfile

    from tools.make_shards import make_shards

    src = _photo_tree(tmp_path / "src")
    index = make_shards(str(src), str(tmp_path / "wds"), shard_bytes=1 << 30, per_shard=0, workers=1, seed=0,
                        max_side=128, quality=90)
    assert index["max_side"] == 128 and index["quality"] == 90
    assert sum(s["count"] for s in index["train"]) == 6
    with tarfile.open(tmp_path / "wds" / index["train"][0]["name"]) as tar:
        sizes = [Image.open(tar.extractfile(m)).size for m in tar.getmembers() if m.name.endswith(".jpg")]
    assert len(sizes) == 6 and max(max(s) for s in sizes) == 128
    assert stored_max_side(str(tmp_path / "wds")) == (128, str(tmp_path / "wds" / "index.json"))


def test_a_crop_larger_than_the_stored_side_is_one_line(tmp_path, capsys):
    from tools.resize_dataset import resize_dataset

    root = write_image_folder(tmp_path / "src", train_per_class=3, val_per_class=2, size=40)
    resize_dataset(str(root), str(tmp_path / "small"), max_side=32, workers=1)
    assert larger_crop_note(str(tmp_path / "small"), 32) is None
    note = larger_crop_note(str(tmp_path / "small"), 48)
    assert note.startswith("warning: ") and "\n" not in note and "at most 32 px" in note and "48 px crop" in note
    out = train_in_process(capsys, *tiny_args(tmp_path / "small", tmp_path / "out", "--epochs", "1",
                                              "--image-size", "40"))
    lines = [line for line in out.splitlines() if "stored with their longer side" in line]
    assert len(lines) == 1 and "40 px crop" in lines[0]


# ----------------------------------------------------------------------------- the seeds' performance lines


@pytest.mark.slow  # the slow tier (-m slow): a GoogLeNet folder run
def test_googlenet_folder_performance_run_prints_every_step(tmp_path):
    """The seed's train_performance_1p.sh pipeline averages every step's img/s after the first two:
    the 20-step CPU performance run prints 20 step lines (and still its FPS@all line)."""
    data = write_image_folder(tmp_path / "data", train_per_class=8, val_per_class=2, size=36)
    device_id = 90000 + os.getpid() % 9000
    out_dir = launcher_output("googlenet") / str(device_id)
    env = launcher_env(dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"), "googlenet")
    try:
        proc = subprocess.run(["bash", ROOT / "models" / "googlenet" / "test" / "train_performance_1p.sh",
                               f"--data_path={data}", "--image_size=32", "--batch_size=4", "--device=cpu",
                               "--workers=0", f"--device_id={device_id}"], capture_output=True, text=True,
                              env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        log = (out_dir / f"train_{device_id}.log").read_text()
        steps = [line for line in log.splitlines() if line.startswith("Epoch:") and "img/s:" in line]
        assert len(steps) == 20
        assert sum("FPS@all" in line for line in log.splitlines()) >= 1
    finally:
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)


def test_performance_print_freq_only_for_bounded_runs_without_validation(tmp_path):
    assert _cfg(tmp_path, "-a", "googlenet", "--stop-step-num", "20", "--no-val").loop.print_freq == 1
    assert _cfg(tmp_path, "-a", "googlenet", "--stop-step-num", "20").loop.print_freq == 10
    assert _cfg(tmp_path, "-a", "googlenet", "--stop-step-num", "20", "--no-val", "-p", "5").loop.print_freq == 5
    assert _cfg(tmp_path, "-a", "alexnet", "--stop-step-num", "20", "--no-val").loop.print_freq == 10


def test_bench_fast_step_uses_the_nets_cpu_defaults_and_says_so(monkeypatch, capsys):
    import dataclasses

    from tools import bench

    entry = models.get_model_entry("tinynet")
    monkeypatch.setitem(models._ENTRIES, "tinynet", dataclasses.replace(entry, cpu_channels_last=False,
                                                                        cpu_amp_dtype="fp32"))
    code = bench.main(["--arch", "tinynet", "--image-size", "32", "--batch-size", "4", "--steps", "2", "--warmup", "1",
                       "--repeat", "1", "--num-classes", "10", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "fast step with the nets' own cpu defaults: tinynet NCHW, fp32" in out.err
    assert "tinynet: fast step with its entry's cpu defaults (NCHW, fp32)" in out.out
    fast = next(line for line in out.out.splitlines() if line.startswith("tinynet") and " fast " in line)
    assert "fp32 NCHW" in fast


# ----------------------------------------------------------------------------- tools/bench.py's modes


def test_time_to_accuracy_table_from_the_runs(monkeypatch, capsys, tmp_path):
    from tools import bench, bench_fast

    folders = []

    def fake_run(*, arch, recipe, data, epochs, args, out):
        out.mkdir()  # what a run writes there
        folders.append(out)
        accs = {"tinynet_modelzoo": [30.0, 50.0, 60.0], "tinynet_fast": [55.0, 61.0]}[recipe]
        return [{"epoch": e, "acc1": a, "epoch_time_s": 10.0 if "fast" not in recipe else 6.0}
                for e, a in enumerate(accs[:epochs])]

    monkeypatch.setattr(bench_fast, "train_run", fake_run)
    code = bench.main(["--time-to-accuracy", "--arch", "tinynet", "--data", "demo", "--seed-epochs", "3", "--fast-epochs", "2"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = [line.split() for line in out.out.splitlines() if line.startswith("tinynet")]
    # seed: 60.00 after 3 epochs (30 s); fast: 61 >= 60 after 2 epochs (12 s): 2.5x
    assert rows[0][2:] == ["tinynet_modelzoo", "3", "60.00", "60.00", "3", "30.0", "30.0", "1.00x"]
    assert rows[1][2:] == ["tinynet_fast", "2", "61.00", "60.00", "2", "12.0", "12.0", "2.50x"]
    assert len([line for line in out.err.splitlines() if "final Acc@1" in line]) == 2  # a progress line per run
    assert len(folders) == 2 and not any(f.parent.exists() for f in folders)  # the runs' folders are removed


@pytest.mark.slow  # the slow tier (-m slow): four trainer runs
def test_time_to_accuracy_runs_the_trainer(tmp_path, image_folder):
    """One real run through the trainer (tests/run_main.py knows tinynet): its metrics read back."""
    import argparse

    from tools.bench_fast import to_target, train_run

    args = argparse.Namespace(trainer=str(ROOT / "tests" / "run_main.py"), batch_size=8, image_size=32, workers=0,
                              seed=0, device="cpu")
    records = train_run(arch="tinynet", recipe="tinynet_modelzoo", data=str(image_folder), epochs=2, args=args,
                        out=tmp_path / "run")
    assert [r["epoch"] for r in records] == [0, 1] and all(r["epoch_time_s"] > 0 for r in records)
    n, spent = to_target(records, records[-1]["acc1"])
    assert n is not None and spent <= sum(r["epoch_time_s"] for r in records) + 1e-9


def test_digits_are_rendered_from_the_csv(tmp_path):
    import gzip

    from tools.bench_fast import make_digits

    rows = [[(i * 7 + j) % 17 for j in range(64)] + [i % 10] for i in range(20)]
    csv = tmp_path / "digits.csv.gz"
    with gzip.open(csv, "wt") as f:
        f.write("\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    root = make_digits(tmp_path / "digits", str(csv), size=32)
    train, val = list((root / "train").rglob("*.jpg")), list((root / "val").rglob("*.jpg"))
    assert (len(train), len(val)) == (16, 4) and Image.open(train[0]).size == (32, 32)
    assert sorted(p.name for p in (root / "train").iterdir()) <= [str(d) for d in range(10)]
    label = {int(p.stem): int(p.parent.name) for p in train + val}
    assert all(label[i] == i % 10 for i in label)


@pytest.mark.slow  # the slow tier (-m slow): loaders and end-to-end runs
def test_pre_resized_loader_and_end_to_end_tables(tmp_path, capsys, monkeypatch):
    from tools import bench

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = bench.main(["--pre-resized", "128", "--arch", "tinynet", "--num-photos", "12", "--steps", "2",
                       "--warmup", "1", "--repeat", "1", "-b", "4", "--image-size", "64", "-j", "0"])
    out = capsys.readouterr()
    assert code == 0, out.err
    loader = [line.split() for line in out.out.splitlines() if line.startswith(("pil ", "gpu "))]
    assert [(r[0], r[1]) for r in loader] == [("pil", "raw"), ("gpu", "raw"), ("pil", "max"), ("gpu", "max")]
    e2e = [line for line in out.out.splitlines() if line.startswith("tinynet")]
    assert len(e2e) == 2 and "raw" in e2e[0] and "max 128" in e2e[1]
    resized = next((tmp_path / "cache" / "classify").glob("*-max128"))
    assert json.loads((resized / "resize.json").read_text())["max_side"] == 128
