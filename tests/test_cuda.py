"""Every CUDA path once, on a real GPU (skipped without CUDA; ``pytest -m cuda`` runs these,
``tools/gpu_check.sh`` runs them first).

- each net's train step and eval step in bf16 and in fp16 with the grad scaler, channels_last,
  fused SGD, against a CPU fp32 step from the same weights on the same batch;
- the no-sync promise: ``torch.cuda.set_sync_debug_mode`` reports every operation that makes
  the host wait for the device (``.item()``, ``.tolist()``, a copy from pageable memory, ...).
  The training step and the evaluation step must do none; the loop may sync only at print
  intervals and at the FPS window's edges;
- ``--data-backend gpu``: nvJPEG batch decode + crop/flip/normalise against the CPU path of
  the same code, a corrupt file in the batch;
- DDP over NCCL (world size 1), checkpoints moving cuda -> cpu and cpu -> cuda, ``--compile``
  and ``--prof`` on the test-only tinynet.

The comparisons are functions of the device (``step_against_cpu_fp32``, ``decode_against_cpu``)
so that their logic can be tried on a CPU device before a GPU is lent.
"""

import dataclasses
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

import models
from classify.amp import AmpSettings
from classify.checkpoint import load_checkpoint
from classify.schema import OptimConfig
from classify.data.device_decode import DeviceDecode, JpegFiles, collate_jpeg
from classify.data.folder import SafeImageFolder
from classify.distributed import broadcast_buffers
from classify.fast import prepare_model
from classify.loop import EpochPlan, evaluate, train_one_epoch, train_step
from classify.metrics import Meter, sum_over_ranks
from classify.parts import build_model, build_train_parts
from classify.report import Reporter
from classify.transforms import Normalize
from tests.conftest import ROOT, free_port, tiny_args, train_in_process, write_image_folder

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

STEPS, BATCH = 12, 8
NETS = [n for n in models.list_models() if (ROOT / "models" / n).is_dir()]  # the networks with a folder


CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)  # an index, as the trainer's (DDP's device_ids)


def _optim(batch: int, label_smoothing: float = 0.1) -> OptimConfig:
    return OptimConfig(epochs=1, start_epoch=0, batch_size=batch, per_device_batch=batch, lr=0.01, momentum=0.9,
                       weight_decay=1e-4, label_smoothing=label_smoothing, lr_scheduler="cosine", lr_epochs=(),
                       lr_step=30, lr_gamma=0.1, warmup_epochs=0.0)


def _parts(amp: AmpSettings, distributed: bool = False):
    model = build_model("tinynet", num_classes=10, device=CUDA, channels_last=True)
    return model, build_train_parts(model, arch="tinynet", optim=_optim(BATCH), steps_per_epoch=STEPS, device=CUDA,
                                    amp=amp, normalize=Normalize((0.5,) * 3, (0.5,) * 3, True).to(CUDA),
                                    distributed=distributed)


def _batches(n=STEPS):
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8, generator=g).pin_memory(),
             torch.randint(0, 10, (BATCH,), generator=g).pin_memory(), 0) for _ in range(n)]


AMPS = [AmpSettings(True, torch.bfloat16, None), AmpSettings(True, torch.float16, None),
        AmpSettings(False, None, None)]


@pytest.mark.parametrize("amp", AMPS, ids=["bf16", "fp16-scaler", "fp32"])
def test_train_and_eval_steps_never_sync(amp):
    model, parts = _parts(amp)
    meter = Meter(["loss", "acc1", "acc5"], parts.device)
    batches = _batches(4)
    train_step(parts, *batches[0][:2], meter=meter, n=BATCH)  # first step: lazy init (cuDNN, allocator) may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for images, target, _ in batches[1:]:
            assert train_step(parts, images, target, meter=meter, n=BATCH)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    # evaluate reads its sums once at the end (a sync there is allowed): count, don't forbid.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            evaluate(model, batches * 3, device=parts.device, amp=amp, normalize=parts.normalize)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) < len(batches), [str(w.message) for w in syncs]  # per pass, not per batch


def test_epoch_syncs_only_at_print_intervals(tmp_path):
    _, parts = _parts(AmpSettings(True, torch.bfloat16, None))
    plan = EpochPlan(epoch=0, steps_per_epoch=STEPS, print_freq=STEPS)  # prints at the first and last step
    reporter = Reporter(tmp_path, is_main=True)
    train_one_epoch(parts, _batches(2), EpochPlan(epoch=0, steps_per_epoch=2, print_freq=1), reporter.step)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_one_epoch(parts, _batches(), plan, reporter.step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) < STEPS, [str(w.message) for w in syncs]  # a per-step sync would give >= STEPS


# --------------------------------------------------------------------------- each net vs CPU fp32

FP32 = AmpSettings(False, None, None)
# Tolerances: bf16 keeps 8 mantissa bits (~0.4% per op), fp16 11. Losses are compared relatively;
# the update as the cosine between the two weight updates and the ratio of their norms. Deep
# BatchNorm nets at random init on a batch of 8 amplify rounding: the same comparison with bf16
# autocast on a CPU gave cosines of 0.99 (AlexNet, VGG16), 0.54 (GoogLeNet), 0.71 (IRv2), with
# fp16 0.999 / 0.999 / 0.93 / 0.95, and norm ratios within 4%. A wrong gradient (an unscaled
# loss, a bad NHWC kernel, a broken fused step) is far outside these.
TOLERANCE = {torch.bfloat16: {"loss": 0.05, "cosine": 0.4}, torch.float16: {"loss": 0.02, "cosine": 0.8}}


def _one_step(arch: str, state, images, target, *, device, amp: AmpSettings, channels_last: bool):
    """One train step then one eval pass of ``arch`` from ``state``: (train loss, weight update
    as one flat fp32 CPU vector, eval loss, parts)."""
    recipe = models.get_recipe(models.default_recipe(arch))
    model = models.create_model(arch, num_classes=10, **recipe.model_kwargs)
    model.load_state_dict(state)
    for m in model.modules():
        if isinstance(m, nn.Dropout):  # dropout draws from each device's own generator
            m.p = 0.0
    model = prepare_model(model, device, channels_last=channels_last, compile_model=False)
    if amp.dtype == torch.float16:  # the recipe's static loss scale, as the trainer, or 1024 where the recipe's
        # is dynamic: a dynamic one starts at 2**16 and skips the first steps, this test's only step
        amp = dataclasses.replace(amp, loss_scale=recipe.loss_scale or 1024.0)
    parts = build_train_parts(model, arch=arch, optim=_optim(images.shape[0], 0.0), steps_per_epoch=10,
                              device=device, amp=amp,
                              normalize=Normalize(recipe.mean, recipe.std, channels_last).to(device))
    meter = Meter(["loss", "acc1", "acc5"], device)
    scale = parts.scaler.get_scale() if parts.scaler is not None else None
    assert train_step(parts, images, target, meter=meter, n=images.shape[0])
    if scale is not None:
        assert parts.scaler.get_scale() == scale, "fp16 step skipped: the scaler saw inf/NaN gradients"
    update = torch.cat([(p.detach().float().cpu() - state[name].float()).flatten()
                        for name, p in model.named_parameters()])
    stats = evaluate(model, [(images, target, 0)], device=device, amp=amp, normalize=parts.normalize)
    return meter.averages()["loss"], update, stats["loss"], parts


def step_against_cpu_fp32(arch: str, amp: AmpSettings, device: torch.device, batch: int = 8) -> dict:
    """The same weights and batch: one step on ``device`` (``amp``, channels_last, fused SGD)
    and one on the CPU in fp32 NCHW. Returns the relative differences and the parts used."""
    size = max(64, models.min_image_size(arch))
    torch.manual_seed(0)
    recipe = models.get_recipe(models.default_recipe(arch))
    state = {k: v.clone() for k, v in models.create_model(arch, num_classes=10, **recipe.model_kwargs)
             .state_dict().items()}
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    target = torch.randint(0, 10, (batch,), generator=g)
    ref = _one_step(arch, state, images, target, device=CPU, amp=FP32, channels_last=False)
    got = _one_step(arch, state, images, target, device=device, amp=amp, channels_last=True)
    cosine = torch.nn.functional.cosine_similarity(ref[1].double(), got[1].double(), dim=0).item()
    return {"loss": abs(got[0] - ref[0]) / abs(ref[0]), "eval_loss": abs(got[2] - ref[2]) / abs(ref[2]),
            "cosine": cosine, "norm_ratio": (got[1].norm() / ref[1].norm()).item(),
            "finite": bool(torch.isfinite(got[1]).all()), "parts": got[3]}


@pytest.mark.parametrize("amp", AMPS[:2], ids=["bf16", "fp16-scaler"])
@pytest.mark.parametrize("arch", NETS)
def test_each_net_steps_like_cpu_fp32(arch, amp):
    result = step_against_cpu_fp32(arch, amp, CUDA)
    parts, tol = result["parts"], TOLERANCE[amp.dtype]
    assert parts.optimizer.defaults["fused"] and parts.normalize.channels_last
    convs = [m for m in parts.model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert (parts.scaler is not None) == (amp.dtype == torch.float16)
    assert result["finite"], result
    assert result["loss"] < tol["loss"] and result["eval_loss"] < tol["loss"], result
    assert result["cosine"] > tol["cosine"] and 0.8 < result["norm_ratio"] < 1.25, result


# --------------------------------------------------------------------------- GPU decode


def _messy_train_folder(root):
    """Noisy 90 px JPEGs in 3 classes, plus a truncated JPEG and a text file named .jpg."""
    root = write_image_folder(root, train_per_class=4, val_per_class=2, size=90)
    good = (root / "train" / "red" / "000.jpg").read_bytes()
    (root / "train" / "red" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "train" / "green" / "notanimage.jpg").write_text("hello")
    return root / "train"


def decode_against_cpu(folder, device: torch.device, train: bool) -> dict:
    """One batch of ``folder`` through ``DeviceDecode`` on ``device`` and on the CPU, from the
    same bytes and crop plans; the differences, in 8-bit levels and after normalisation."""
    data = SafeImageFolder(folder)
    files = JpegFiles(data.samples, data.classes, train, 64, 73)
    torch.manual_seed(0)
    batch = collate_jpeg([files[i] for i in range(len(files))])
    ref_images, ref_target, ref_bad = DeviceDecode(CPU, train, 64, 73)(batch)
    images, target, bad = DeviceDecode(device, train, 64, 73)(batch)
    normalize = Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    on_device = normalize.to(device)(images).cpu()
    return {"shape": (tuple(images.shape), tuple(ref_images.shape)), "device": images.device.type,
            "bad": (bad, ref_bad), "target": (target.cpu().tolist(), ref_target.tolist()),
            "levels": (images.cpu().float() - ref_images.float()).abs().mean().item(),
            "normalised": (on_device - normalize.to(CPU)(images.cpu())).abs().max().item()}


@pytest.mark.parametrize("train", [True, False], ids=["train-crop-flip", "val-resize-centre"])
def test_gpu_decode_matches_the_cpu_path(tmp_path, train):
    result = decode_against_cpu(_messy_train_folder(tmp_path / "d"), CUDA, train)
    assert result["device"] == "cuda"
    assert result["shape"][0] == result["shape"][1] == (12, 3, 64, 64), result  # 12 good of 14 files
    assert result["bad"] == (2, 2) and result["target"][0] == result["target"][1], result
    assert result["levels"] < 3.0, result  # nvJPEG vs libjpeg IDCT and resampling: a few levels at most
    assert result["normalised"] < 1e-5, result  # the same images normalised on cuda and on the cpu


# --------------------------------------------------------------------------- DDP, checkpoints, compile, profiler


def test_ddp_over_nccl_world_size_1():
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1,
                            device_id=CUDA)
    try:
        assert dist.get_backend() == "nccl"
        model, parts = _parts(AmpSettings(True, torch.bfloat16, None), distributed=True)
        assert isinstance(parts.model, DistributedDataParallel)
        reporter = None  # silent, writes nothing
        stats = train_one_epoch(parts, _batches(4), EpochPlan(epoch=0, steps_per_epoch=4, print_freq=2), reporter)
        assert stats["images"] == 4 * BATCH and stats["steps"] == 4 and stats["loss"] == stats["loss"]  # not NaN
        broadcast_buffers(model)
        result = evaluate(model, _batches(3), device=CUDA, amp=parts.amp, normalize=parts.normalize)
        assert result["images"] == 3 * BATCH and result["bad_images"] == 0
        assert sum_over_ranks(2.0, CUDA) == 2.0  # a host number through an nccl all-reduce on the device
    finally:
        dist.destroy_process_group()


def test_checkpoint_moves_between_cuda_and_cpu(image_folder, tmp_path, capsys):
    for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
        out = tmp_path / f"{first}-then-{second}"
        train_in_process(capsys, *tiny_args(image_folder, out, "--epochs", "1", "--device", first))
        log = train_in_process(capsys, *tiny_args(image_folder, out, "--epochs", "2", "--device", second,
                                                  "--resume", out / "checkpoint.pth.tar"))
        assert "=> resumed from" in log and "Epoch: [1]" in log and "Epoch: [0]" not in log, log
        ckpt = load_checkpoint(out / "checkpoint.pth.tar")
        assert ckpt["epoch"] == 2 and all(t.device.type == "cpu" for t in ckpt["state_dict"].values())
        log = train_in_process(capsys, *tiny_args(image_folder, tmp_path / f"eval-{first}", "-e", "--device", first,
                                                  "--resume", out / "checkpoint.pth.tar"))
        assert " * Acc@1" in log


def test_compile_on_a_small_net(image_folder, tmp_path, capsys):
    log = train_in_process(capsys, *tiny_args(image_folder, tmp_path, "--epochs", "1", "--device", "cuda",
                                              "--compile"))
    assert " * Acc@1" in log and "FPS@all" in log
    keys = load_checkpoint(tmp_path / "checkpoint.pth.tar")["state_dict"]
    assert keys and not any(k.startswith(("_orig_mod.", "module.")) for k in keys)


def test_profiler_records_cuda_kernels(image_folder, tmp_path, capsys):
    train_in_process(capsys, *tiny_args(image_folder, tmp_path, "--epochs", "1", "--device", "cuda", "--prof"))
    table = (tmp_path / "profile" / "top_ops.txt").read_text()
    assert "CUDA" in table and (tmp_path / "profile" / "trace.json").stat().st_size > 0
