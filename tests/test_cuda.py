"""The no-sync promise on a real GPU (skipped without CUDA; ``pytest -m cuda`` runs these).

``torch.cuda.set_sync_debug_mode`` reports every operation that makes the host wait for the
device (``.item()``, ``.tolist()``, a copy from pageable memory, ...). The training step and
the evaluation step must do none; the loop may sync only at print intervals and at the
FPS window's edges.
"""

import warnings

import pytest
import torch

from classify.amp import AmpSettings
from classify.config import OptimConfig
from classify.loop import EpochPlan, evaluate, train_one_epoch, train_step
from classify.metrics import Meter
from classify.parts import build_model, build_train_parts
from classify.report import Reporter
from classify.transforms import Normalize

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

STEPS, BATCH = 12, 8


def _parts(amp: AmpSettings):
    device = torch.device("cuda")
    model = build_model("tinynet", num_classes=10, device=device, channels_last=True)
    optim = OptimConfig(epochs=1, start_epoch=0, batch_size=BATCH, per_device_batch=BATCH, lr=0.01, momentum=0.9,
                        weight_decay=1e-4, label_smoothing=0.1, lr_scheduler="cosine", lr_epochs=(), lr_step=30,
                        lr_gamma=0.1, warmup_epochs=0.0)
    return model, build_train_parts(model, arch="tinynet", optim=optim, steps_per_epoch=STEPS, device=device,
                                    amp=amp, normalize=Normalize((0.5,) * 3, (0.5,) * 3, True).to(device))


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
    train_one_epoch(parts, _batches(2), EpochPlan(epoch=0, steps_per_epoch=2, print_freq=1), reporter)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_one_epoch(parts, _batches(), plan, reporter)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) < STEPS, [str(w.message) for w in syncs]  # a per-step sync would give >= STEPS
