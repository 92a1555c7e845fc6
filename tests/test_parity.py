"""Accuracy parity with a plain torchvision training loop (issue #28).

With the data made deterministic (the same fixed batches, in the same order), our engine's
training step -- ``classify.parts.build_model`` + ``build_train_parts`` + ``classify.loop.train_step``,
as ``classify.run`` wires them -- must leave the same weights as the loop of torchvision's
reference script and pytorch/examples: the same builder and init seed, ``torch.optim.SGD`` with
its default kernel, ``zero_grad``/``backward``/``step``, and the same lr schedule. Checked in fp32
and with the recipes' mixed precision resolved as on an accelerator (fp16 autocast with the
ModelZoo recipes' static loss scale 1024, emulated on the CPU; and bf16).
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import models
from classify.amp import make_scaler, resolve_amp
from classify.schema import OptimConfig
from classify.loop import train_step
from classify.parts import build_model, build_train_parts
from classify.transforms import Normalize

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STEPS, BATCH, SIZE, CLASSES, LR, EPOCHS = 6, 8, 32, 10, 0.05, 2


def _batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8, generator=g),
             torch.randint(0, CLASSES, (BATCH,), generator=g)) for _ in range(STEPS)]


def _optim(scheduler: str) -> OptimConfig:
    return OptimConfig(epochs=EPOCHS, start_epoch=0, batch_size=BATCH, per_device_batch=BATCH, lr=LR, momentum=0.9,
                       weight_decay=1e-4, label_smoothing=0.0, lr_scheduler=scheduler, lr_epochs=(), lr_step=1,
                       lr_gamma=0.1, warmup_epochs=0)


def _ours(batches, *, amp, scheduler: str, channels_last: bool):
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = build_model("tinynet", num_classes=CLASSES, device=device, channels_last=channels_last)
    parts = build_train_parts(model, arch="tinynet", optim=_optim(scheduler), steps_per_epoch=STEPS // EPOCHS,
                              device=device, amp=amp, normalize=Normalize(MEAN, STD, channels_last))
    lrs = []
    for images, target in batches:
        lrs.append(parts.optimizer.param_groups[0]["lr"])
        torch.manual_seed(1)  # the same dropout mask on both sides
        assert train_step(parts, images, target)
    return model, lrs, parts.scaler


def _plain(batches, *, dtype, loss_scale, scheduler: str):
    """The reference loop: ToTensor + Normalize, torch.optim.SGD (default kernel), a torch scheduler."""
    torch.manual_seed(0)
    model = models.create_model("tinynet", num_classes=CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4)
    steps = STEPS // EPOCHS
    if scheduler == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda it: 0.5 * (1 + math.cos(math.pi * min(it / (steps * EPOCHS), 1.0))))
    else:  # step: x0.1 every epoch (lr_step=1), torchvision's StepLR counted in optimizer steps
        sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=steps, gamma=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=loss_scale) if loss_scale else None
    criterion = nn.CrossEntropyLoss()
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    model.train()
    lrs = []
    for images, target in batches:
        lrs.append(optimizer.param_groups[0]["lr"])
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = criterion(model((images.float() / 255 - mean) / std), target)
        optimizer.zero_grad()
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        sched.step()
    return model, lrs


def _assert_same_weights(ours: nn.Module, plain: nn.Module, rtol: float) -> None:
    theirs = plain.state_dict()
    for name, value in ours.state_dict().items():
        if not value.is_floating_point():
            assert torch.equal(value, theirs[name]), name
            continue
        scale = theirs[name].abs().max().clamp_min(1e-6)
        assert (value - theirs[name]).abs().max() / scale < rtol, name


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("scheduler", ["cosine", "step"])
def test_fp32_step_equals_plain_torchvision_loop(channels_last, scheduler):
    batches = _batches()
    amp = resolve_amp(torch.device("cpu"), asked=False, opt_level=None, recipe_opt_level="O1", loss_scale=1024.0,
                      dtype="fp32")
    assert not amp.enabled
    ours, our_lrs, scaler = _ours(batches, amp=amp, scheduler=scheduler, channels_last=channels_last)
    plain, plain_lrs = _plain(batches, dtype=None, loss_scale=None, scheduler=scheduler)
    assert scaler is None
    assert our_lrs == pytest.approx(plain_lrs, rel=1e-6, abs=1e-12)  # the lr applied at every step
    assert our_lrs[0] == LR  # --lr as given: not rescaled by batch / recipe batch
    _assert_same_weights(ours, plain, rtol=1e-5)


@pytest.mark.parametrize("dtype,loss_scale", [("fp16", 1024.0), ("bf16", 1024.0)])
def test_recipe_mixed_precision_step_equals_plain_torchvision_loop(dtype, loss_scale):
    """The GoogLeNet/VGG recipes' O1 with ``loss_scale=1024`` as an accelerator resolves it: fp16
    autocast + a static GradScaler at 1024 (bf16: no scaler); a plain ``torch.amp`` loop with
    ``GradScaler(init_scale=1024)`` must end at the same weights (unscaled gradients, weight decay
    and momentum on the true gradient, the scale unchanged after finite steps)."""
    batches = _batches()
    amp = resolve_amp(torch.device("cpu"), asked=False, opt_level=None, recipe_opt_level="O1",
                      loss_scale=loss_scale, dtype=dtype)
    assert amp.enabled and amp.loss_scale == loss_scale
    torch_dtype = torch.float16 if dtype == "fp16" else torch.bfloat16
    assert amp.dtype == torch_dtype
    ours, our_lrs, scaler = _ours(batches, amp=amp, scheduler="cosine", channels_last=False)
    plain, plain_lrs = _plain(batches, dtype=torch_dtype, loss_scale=loss_scale if dtype == "fp16" else None,
                              scheduler="cosine")
    if dtype == "fp16":
        assert scaler is not None and scaler.get_scale() == loss_scale  # static: never grown
    else:
        assert scaler is None and make_scaler(torch.device("cpu"), amp) is None
    assert our_lrs == pytest.approx(plain_lrs, rel=1e-6, abs=1e-12)
    _assert_same_weights(ours, plain, rtol=1e-4)


def test_parity_tool_digits_reference_loop_and_grad_check(tmp_path, image_folder):
    """tools/parity.py: the digits tree from a digits CSV, the reference loop's figures, --grad-check."""
    from tools import parity

    rows = torch.randint(0, 17, (30, 64)).numpy()
    csv = tmp_path / "digits.csv"
    csv.write_text("\n".join(",".join(map(str, r)) + f",{i % 3}" for i, r in enumerate(rows)))
    out = parity.make_digits(tmp_path / "digits", size=32, csv=str(csv))
    train, val = sorted((out / "train").rglob("*.jpg")), sorted((out / "val").rglob("*.jpg"))
    assert (len(train), len(val)) == (24, 6) and sorted(p.name for p in (out / "train").iterdir()) == ["0", "1", "2"]
    from PIL import Image
    assert Image.open(train[0]).size == (32, 32) and Image.open(train[0]).mode == "RGB"

    ref = parity.reference_run(image_folder, arch="tinynet", seed=0, epochs=2, batch_size=8, lr=0.05, image_size=32,
                               workers=0)
    assert len(ref["acc1"]) == 2 and ref["best"] == max(ref["acc1"]) and 0 <= ref["final"] <= 100

    errors = parity.gradient_fidelity("tinynet", image_size=16, batch_size=4)
    assert set(errors) == {"fp32", "bf16", "fp16"} and errors["fp32"] < 1e-4 < errors["bf16"]


def test_digits_styles(tmp_path):
    """--digits-style ink: dark ink on a light canvas; colour: any two far-apart colours."""
    from PIL import Image

    from tools import parity

    rows = torch.randint(0, 17, (10, 64)).numpy()
    rows[:, 27:29] = 16  # ink in the middle of every digit
    csv = tmp_path / "digits.csv"
    csv.write_text("\n".join(",".join(map(str, r)) + f",{i % 2}" for i, r in enumerate(rows)))
    means = {}
    for style in parity.DIGIT_STYLES:
        out = parity.make_digits(tmp_path / style, size=32, csv=str(csv), style=style)
        means[style] = min(float(np.asarray(Image.open(p), np.float32).mean())
                           for p in (out / "train").rglob("*.jpg"))
    assert means["ink"] > 100  # a light canvas behind every digit


@pytest.mark.slow
def test_own_data_tool_defaults_and_finetune(tmp_path, image_folder, capsys, subprocess_env, monkeypatch):
    """tools/own_data.py: both tables from real main.py runs (tinynet, 1 epoch), the fine-tuned run
    starting from the first task's checkpoint with a replaced head."""
    from tools import own_data

    for name in ("PYTHONPATH", "OMP_NUM_THREADS"):  # its main.py subprocesses know tinynet
        monkeypatch.setenv(name, subprocess_env[name])

    assert own_data.main(["defaults", "--data", str(image_folder), "-a", "tinynet", "--seeds", "0", "--epochs", "1",
                          "-j", "0", "--json", str(tmp_path / "a.json")]) == 0
    table = capsys.readouterr().out
    assert "torchvision defaults best / final Acc@1" in table and "| 0 |" in table and "| mean |" in table
    a = json.loads((tmp_path / "a.json").read_text())["rows"][0]
    assert len(a["reference"]["acc1"]) == len(a["ours"]["acc1"]) == 1
    assert a["ours"]["cmd"].endswith("-a tinynet --epochs 1 --seed 0")

    assert own_data.main(["finetune", "--data", str(image_folder), "-a", "tinynet", "--seeds", "0", "--epochs", "1",
                          "--pretrain-epochs", "1", "--pretrain-classes", "2", "--variants=--freeze-backbone",
                          "--json", str(tmp_path / "b.json")]) == 0
    assert "fine-tuned --freeze-backbone best / final Acc@1" in capsys.readouterr().out
    b = json.loads((tmp_path / "b.json").read_text())
    row = b["rows"][0]
    assert "--pretrained" in row["finetune"]["cmd"] and "--pretrained" not in row["scratch"]["cmd"]
    assert row["finetune"]["head"] == row["--freeze-backbone"]["head"] == "replaced"
    assert row["--freeze-backbone"]["cmd"].endswith("--freeze-backbone") and 0 <= b["task1_best_acc1"] <= 100
