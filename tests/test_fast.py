"""Fast-path building blocks (classify/fast.py, classify/optim.py): same maths as the plain versions."""

import torch
import torch.nn as nn

from classify.fast import prepare_model
from classify.optim import make_optimizer


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))


def test_cpu_optimizer_is_fused_and_matches_plain_sgd():
    ours, plain = _net(), _net()
    opt = make_optimizer(ours, lr=0.1, momentum=0.9, weight_decay=1e-4, device=torch.device("cpu"))
    assert opt.defaults["fused"] is True  # ~3x faster step than per-tensor SGD on CPU
    ref = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=False)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    for _ in range(3):
        for model, optimizer in ((ours, opt), (plain, ref)):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_other_devices_fall_back_to_foreach():
    opt = make_optimizer(_net(), lr=0.1, momentum=0.9, weight_decay=0.0, device=torch.device("meta"))
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]


def test_prepare_model_channels_last():
    model = prepare_model(_net(), torch.device("cpu"), channels_last=True, compile_model=False)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
