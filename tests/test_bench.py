"""tools/bench.py: the tables, the JSON, the loader comparison and the one-line errors.

The numbers themselves are not checked (timings belong to the bench, not to tests); every
run here is tiny: the test-only tinynet at 32 px, a few steps, no loader workers.
"""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import models
from models import ModelEntry
from tests import tinynet

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--arch", "tinynet", "--image-size", "32", "--batch-size", "4", "--steps", "2", "--warmup", "1",
        "--num-classes", "10", "--device", "cpu"]


@pytest.fixture(scope="module")
def bench():
    from tools import bench

    return bench


def run(bench, capsys, *argv):
    code = bench.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compute_table_has_every_column(bench, capsys):
    code, out, err = run(bench, capsys, *TINY, "--peak-tflops", "1.5")
    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("arch"))
    for column in ("px", "mode", "path", "img/s", "speed-up", "GFLOP/img", "TFLOP/s", "util %"):
        assert column in header, header
    rows = {line.split()[2]: line.split() for line in lines if line.startswith("tinynet")}
    assert set(rows) == {"baseline", "fast"}, out
    assert rows["baseline"][-4] == "1.00x" and float(rows["fast"][-4].rstrip("x")) > 0
    assert float(rows["fast"][-3]) > 0 and rows["fast"][-1] != "-"  # GFLOP/img counted, utilisation shown
    assert "compiled skipped on cpu" in out


def test_json_has_the_fields(bench, capsys):
    code, out, err = run(bench, capsys, *TINY, "--json", "--repeat", "2")
    assert code == 0, err
    report = json.loads(out)
    assert {"env", "settings", "compute", "notes"} <= set(report)
    assert {"device", "torch", "cpus", "threads"} <= set(report["env"])
    assert [r["mode"] for r in report["compute"]] == ["baseline", "fast"]
    for row in report["compute"]:
        assert {"arch", "image_size", "mode", "img_s", "speedup", "gflop_per_img", "tflops", "util_pct",
                "step_ms", "samples"} <= set(row)
        assert row["img_s"] > 0 and row["gflop_per_img"] > 0 and len(row["samples"]) == 2
        assert row["util_pct"] is None  # no --peak-tflops
    # GFLOP/img = FlopCounterMode on one forward + backward, per image. tinynet at 32 px, in
    # multiply-adds: forward 3*9*8*16*16 + 8*9*16*8*8 + 16*10 = 129184; backward: conv1 weight grad only
    # (the input needs no grad) 55296, conv2 weight + input grads 2*73728, linear 2*160 = 203072.
    assert report["compute"][0]["gflop_per_img"] == pytest.approx(2 * (129184 + 203072) / 1e9, rel=1e-3)


def test_loader_mode_on_a_tiny_image_folder(bench, capsys, image_folder):
    code, out, err = run(bench, capsys, *TINY, "--data", image_folder, "--loader", "pil,gpu,reference",
                         "--workers", "0", "--json")
    assert code == 0, err
    report = json.loads(out)
    loaders = {r["loader"]: r for r in report["loader"]}
    assert set(loaders) == {"pil", "gpu", "reference"}
    assert all(r["img_s"] > 0 and r["img_s_per_worker"] > 0 and r["bad_images"] == 0 for r in loaders.values())
    assert loaders["reference"]["vs_reference"] == 1.0
    assert {r["loader"] for r in report["end_to_end"]} == {"pil", "gpu", "reference"}
    assert all(r["img_s"] > 0 and r["compute_img_s"] > 0 for r in report["end_to_end"])
    assert [r["source"] for r in report["overhead"]] == ["synthetic", "pil loader"]
    assert all(r["bare_img_s"] > 0 and r["ours_img_s"] > 0 and r["ratio"] > 0 for r in report["overhead"])
    assert any("--data-backend gpu" in note for note in report["notes"])


def test_loader_table_prints_with_workers(bench, capsys, image_folder):
    code, out, err = run(bench, capsys, *TINY, "--data", image_folder, "--loader", "gpu,pil", "--workers", "1",
                         "--steps", "4")
    assert code == 0, err
    for title in ("loader only", "end to end", "loop overhead"):
        assert title in out, out
    header = next(line for line in out.splitlines() if line.startswith("loader ") and "img/s" in line)
    for column in ("workers", "img/s", "img/s/worker", "img/CPU-s", "x ref"):
        assert column in header
    rows = [line.split() for line in out.splitlines() if line.startswith(("gpu ", "pil "))]
    assert len(rows) == 2 and all(float(r[5]) > 0 for r in rows), out  # img/CPU-s read from /proc


def test_make_photos_then_loader_only(bench, capsys, tmp_path):
    photos = tmp_path / "photos"
    code, out, err = run(bench, capsys, *TINY, "--make-photos", photos, "--num-photos", "4", "--loader-only",
                         "--loader", "pil,reference", "--workers", "0", "--batch-size", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert len(list(photos.glob("train/*/*.jpg"))) == 4
    assert [r["loader"] for r in report["loader"]] == ["pil", "reference"]
    assert report["end_to_end"] == [] and report["overhead"] == []
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not photos")
    code, _, err = run(bench, capsys, *TINY, "--make-photos", tmp_path / "other", "--num-photos", "4")
    assert code == 2 and "is not empty" in err and len(err.strip().splitlines()) == 1


def test_data_photos_uses_the_shared_generator(bench, capsys, tmp_path, monkeypatch):
    """``--data photos``: classify.data.photos' cache under $XDG_CACHE_HOME, made once."""
    from classify.data import photos

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code, out, err = run(bench, capsys, *TINY, "--data", "photos", "--num-photos", "2", "--loader-only",
                         "--loader", "pil", "--workers", "0", "--batch-size", "1", "--json")
    assert code == 0, err
    root = photos.default_photos_root(2)
    assert root.parent == tmp_path / "classify" and len(list(root.glob("train/*/*.jpg"))) == 2
    assert json.loads(out)["settings"]["data"] == str(root / "train")
    assert sorted(p.name for p in root.parent.iterdir()) == [root.name]  # no temp tree left


def test_parts_are_the_trainers(bench):
    """The fast step's parts come from classify.parts (the functions classify.run uses)."""
    s = bench.Settings(torch.device("cpu"), 4, 2, 1, 1, 10, False, None, None)
    parts = bench.make_parts(bench.Net.make("tinynet", 32), s, compile_model=False)
    assert parts.loss_fn is models.get_model_entry("tinynet").loss
    assert parts.check_finite and parts.scaler is None and parts.normalize.channels_last  # NHWC: the cpu default
    assert parts.optimizer.defaults["lr"] == bench.LR and parts.criterion.label_smoothing == 0.0
    assert [f(step) for f in parts.scheduler.lr_lambdas for step in (0, 10**6)] == [1.0, 1.0]  # constant lr
    assert bench.describe(parts) == "fp32 NHWC fused-SGD uint8"  # tinynet's recipe is O0: fp32


def test_flops_and_steps_use_the_entry_loss(bench):
    """count_gflops, the baseline step and the bare loop call the net's loss hook."""
    calls = []

    def hook(criterion, output, target):
        calls.append(output.device.type)
        return output, criterion(output, target) * 2.0

    recipe = dataclasses.replace(tinynet.RECIPE, name="tinyhook_test", arch="tinyhook")
    models.register_model(ModelEntry(name="tinyhook", build=tinynet.build, recipes={recipe.name: recipe},
                                     default_recipe=recipe.name, min_image_size=8, loss=hook))
    try:
        net = bench.Net.make("tinyhook", 32)
        assert bench.count_gflops(net, 10) == pytest.approx(bench.count_gflops(bench.Net.make("tinynet", 32), 10))
        assert calls == ["meta"]
        s = bench.Settings(torch.device("cpu"), 4, 2, 1, 1, 10, False, None, None)
        uint8, normalised, target = bench.synthetic_batch(net, s)
        bench.baseline_step(net, s, normalised, target)()
        assert calls == ["meta", "cpu"]
        parts = bench.make_parts(net, s, compile_model=False)
        assert parts.loss_fn is hook
        assert bench.bare_loop(parts, [(uint8, target, 0)] * 3) > 0
        assert calls == ["meta"] + ["cpu"] * 4
    finally:
        models.unregister_model("tinyhook")


def test_loader_cpu_counts_the_workers(bench, image_folder, monkeypatch):
    """img/CPU-s includes the loader's worker processes, found without DataLoader internals."""
    seen = []
    cpu_seconds = bench._cpu_seconds
    monkeypatch.setattr(bench, "_cpu_seconds", lambda pids: seen.append(list(pids)) or cpu_seconds(pids))
    s = bench.Settings(torch.device("cpu"), 4, 3, 1, 1, 10, False, None, None)
    net = bench.Net.make("tinynet", 32)
    normalize = bench.Normalize(net.recipe.mean, net.recipe.std)
    for name in ("pil", "gpu", "reference"):
        seen.clear()
        result = bench.measure_loader(bench.make_backend(name, image_folder / "train", net, s, 2), normalize,
                                      s.device, skip=2)
        assert len(seen) == 2 and len(seen[0]) == 2 and seen[0] == seen[1], (name, seen)
        assert result["img_per_cpu_s"] > 0 and result["img_s"] > 0
        assert not set(seen[0]) & bench._child_pids(), name  # the workers are gone once it returns


def test_loader_cpu_window_counts_the_prefetched_batches(bench, monkeypatch):
    """img/CPU-s is every image over every CPU-second since the workers started: the batches the workers
    prefetched before the wall-clock window opens (after ``skip``) cost CPU too. A fake loader that works
    4 batches ahead, 0.1 CPU-s per batch of 16: 6 x 16 images / 0.6 s = 160 img/CPU-s (a window opened
    after 2 batches sees 64 images for 0.1 s: 640)."""
    cpu = [0.0]

    class Prefetching:
        def __len__(self):
            return 6

        def __iter__(self):
            made = 0
            for i in range(6):
                while made < min(6, i + 5):  # this batch and up to 4 ahead
                    cpu[0] += 0.1
                    made += 1
                yield torch.zeros(16, 3, 4, 4, dtype=torch.uint8), torch.zeros(16, dtype=torch.long), 0

    monkeypatch.setattr(bench, "_cpu_seconds", lambda pids: cpu[0])
    backend = bench.Backend("fake", Prefetching, lambda batch: batch)
    normalize = bench.Normalize((0.5,) * 3, (0.25,) * 3)
    result = bench.measure_loader(backend, normalize, torch.device("cpu"), skip=2)
    assert result["img_per_cpu_s"] == pytest.approx(160.0)


def test_loader_bench_main_process_on_one_thread(bench, image_folder, monkeypatch):
    """With workers the loader table's main process runs on one intra-op thread (idle OpenMP threads spin,
    and img/CPU-s would count that as loading), and gets its thread count back afterwards."""
    seen = []
    monkeypatch.setattr(bench, "measure_loader", lambda *a, **k: seen.append(torch.get_num_threads()) or
                        {"img_s": 1.0, "img_per_cpu_s": 1.0, "bad": 0})
    s = bench.Settings(torch.device("cpu"), 4, 3, 1, 1, 10, False, None, None)
    net = bench.Net.make("tinynet", 32)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        bench.bench_loaders(image_folder / "train", net, s, ["pil"], 2, lambda text: None)
        assert seen == [1] and torch.get_num_threads() == 2
        bench.bench_loaders(image_folder / "train", net, s, ["pil"], 0, lambda text: None)
        assert seen == [1, 2]  # without workers the main process loads: its threads are the loader's
    finally:
        torch.set_num_threads(threads)


def test_precision_modes_are_ratios_to_fp32(bench, capsys):
    code, out, err = run(bench, capsys, *TINY, "--precision")
    assert code == 0, err
    assert "speed-up over fp32" in out
    rows = {line.split()[2]: line.split() for line in out.splitlines() if line.startswith("tinynet")}
    assert list(rows) == ["fp32", "channels_last", "bf16", "both"], out
    paths = {mode: " ".join(r[3:5]) for mode, r in rows.items()}
    assert paths == {"fp32": "fp32 NCHW", "channels_last": "fp32 NHWC", "bf16": "bfloat16 NCHW",
                     "both": "bfloat16 NHWC"}
    assert rows["fp32"][-4] == "1.00x"
    assert len([line for line in err.splitlines() if "round" in line]) == 4 * 2  # one line per measurement
    code, _, err = run(bench, capsys, *TINY, "--precision", "--modes", "fast")
    assert code == 2 and "drop --modes or --precision" in err


def test_cpu_defaults_are_sized_for_a_cpu(bench):
    """Bare on a CPU: the default net at 64 px, a few steps; on an accelerator today's sizes, every net."""
    args = bench.get_args_parser().parse_args([])
    taken = bench.apply_device_defaults(args, torch.device("cpu"))
    assert set(taken) == {"batch_size", "steps", "warmup", "repeat", "image_size"}
    assert (args.batch_size, args.steps, args.warmup, args.repeat, args.image_size) == (32, 10, 2, 2, 64)
    assert [(n.arch, n.size) for n in bench._nets(args, torch.device("cpu"))] == [(models.DEFAULT_ARCH, 64)]
    assert bench._modes(args, torch.device("cpu")) == ["baseline", "fast"]
    args = bench.get_args_parser().parse_args(["--steps", "7", "--arch", "all"])
    bench.apply_device_defaults(args, torch.device("cuda"))  # only its type is read: no GPU needed
    assert (args.batch_size, args.steps, args.warmup, args.repeat, args.image_size) == (64, 7, 5, 1, None)
    nets = bench._nets(args, torch.device("cuda"))
    assert [n.arch for n in nets] == models.list_models() and nets[0].size == models.get_recipe(
        models.default_recipe(nets[0].arch)).image_size
    assert bench._modes(args, torch.device("cuda")) == ["baseline", "fast", "compiled"]


def test_bare_run_announces_its_defaults_and_each_measurement(bench, capsys):
    code, out, err = run(bench, capsys, "--arch", "tinynet", "--num-classes", "10", "--device", "cpu")
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0].strip().startswith("bench on cpu: tinynet 64 px; batch 32, 10 steps after 2 warm-up, best of 2 "
                                       "(--batch-size, --steps, --warmup, --repeat, --image-size: the cpu defaults)")
    assert len([line for line in lines if "round" in line and "img/s" in line]) == 2 * 2, err
    assert "batch 32, 10 steps after 2 warm-up, best of 2" in out


@pytest.mark.parametrize("argv, message", [
    (["--arch", "resnet9000"], "unknown --arch resnet9000"),
    (["--data", "/no/such/folder"], "is not a folder"),
    (["--modes", "fast,warp"], "choose from baseline, fast, compiled"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(bench, capsys, argv, message):
    try:
        code = bench.main(["--device", "cpu", *argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
