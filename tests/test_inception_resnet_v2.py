"""Inception-ResNet-v2: size, timm key/weight compatibility, small-input forward and backward."""
import pytest
import torch

from models.inception_resnet_v2.model import InceptionResNetV2, inception_resnet_v2

SMALL = 75  # the smallest input the unpadded stem and two reductions accept


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shapes(model: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def ours():
    torch.manual_seed(0)
    return inception_resnet_v2(num_classes=10).eval()


@pytest.fixture(scope="module")
def theirs():
    timm = pytest.importorskip("timm")
    return timm.create_model("inception_resnet_v2", pretrained=False, num_classes=10).eval()


def _randomize_bn_stats(model: torch.nn.Module) -> None:
    """Non-trivial running stats, so a BN mix-up would show in the outputs."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def test_parameter_count_matches_paper_model():
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = InceptionResNetV2()
    assert _num_params(model) == 55_843_464


def test_state_dict_keys_and_shapes_match_timm(ours, theirs):
    assert _shapes(ours) == _shapes(theirs)
    # the head is named as in timm, so timm checkpoints' classifier loads too
    assert "classif.weight" in ours.state_dict()


@pytest.mark.parametrize("direction", ["ours_to_timm", "timm_to_ours"])
@torch.no_grad()
def test_weights_transfer_to_and_from_timm(ours, theirs, direction):
    src, dst = (ours, theirs) if direction == "ours_to_timm" else (theirs, ours)
    torch.manual_seed(1)
    _randomize_bn_stats(src)
    dst.load_state_dict(src.state_dict(), strict=True)
    x = torch.randn(2, 3, SMALL, SMALL)
    torch.testing.assert_close(dst(x), src(x), rtol=0, atol=1e-5)


@torch.no_grad()
def test_forward_small_input_shape(ours):
    assert ours(torch.randn(2, 3, SMALL, SMALL)).shape == (2, 10)


def test_backward_in_train_mode():
    model = inception_resnet_v2(num_classes=5, drop_rate=0.2).train()
    out = model(torch.randn(2, 3, SMALL, SMALL))
    assert out.shape == (2, 5)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 3])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.conv2d_1a.conv.weight.grad.abs().sum() > 0
