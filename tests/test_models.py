"""Registry-driven model and recipe tests: every net builds, trains a step, and its
state_dict loads into the reference constructor (torchvision / timm) with strict=True."""

import re
from pathlib import Path

import pytest
import torch
import torchvision

import models
from classify.checkpoint import clean_state_dict

ROOT = Path(__file__).resolve().parent.parent
NETS = [n for n in models.list_models() if (ROOT / "models" / n).is_dir()]  # not the tests' own nets
RECIPES = [r for r in models.list_recipes() if models.get_recipe(r).arch in NETS]
TORCHVISION_NETS = [n for n in NETS if n in torchvision.models.list_models()]  # built with torchvision's builder


def test_registry_names():
    assert NETS == list(models.NETWORKS)  # the registry's networks, in its order
    assert models.DEFAULT_ARCH in NETS
    for name in NETS:
        entry = models.get_model_entry(name)
        assert entry.default_recipe in entry.recipes
        assert all(r.startswith(f"{name}_") and models.get_recipe(r).arch == name for r in entry.recipes)
    assert sorted(RECIPES) == sorted(r for n in NETS for r in models.get_model_entry(n).recipes)


def _readme_network_table():
    """The README's network table: its rows' cells (the one table whose first header is "network")."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*network\s*\|", line))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_readme_network_table_lists_every_network():
    rows = _readme_network_table()
    assert [row[0] for row in rows] == [f"`{n}`" for n in NETS]
    for net, row in zip(NETS, rows):
        text = " ".join(row)
        assert f"`{models.default_recipe(net)}`" in text  # the default recipe named
        assert f"(models/{net}/README.md)" in text and (ROOT / "models" / net / "README.md").is_file()


@pytest.mark.parametrize("name", NETS)
def test_train_step_at_min_size(name):
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=7)
    size = models.min_image_size(name)
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", TORCHVISION_NETS)
def test_torchvision_strict_load(name):
    ours = models.create_model(name, num_classes=10)
    kwargs = models.get_model_entry(name).inference_kwargs  # e.g. GoogLeNet without its aux heads
    with torch.device("meta"):  # no weights to initialise: names and shapes are what is compared
        reference = torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)
    reference.load_state_dict(clean_state_dict(ours.state_dict()), strict=True, assign=True)
    assert not any(p.is_meta for p in reference.parameters())  # every parameter came from ours


def test_alexnet_he_init_lets_the_image_reach_the_logits():
    """torchvision's default AlexNet init shrinks the signal ~150x more: its logits barely
    depend on the image (std over images ~4e-4) and SGD sits at chance for hundreds of steps."""
    x = torch.randn(16, 3, 64, 64)
    spread = {}
    for init in ("he", "torchvision"):
        torch.manual_seed(0)
        with torch.no_grad():
            spread[init] = models.create_model("alexnet", num_classes=10, init=init).eval()(x).std(0).mean().item()
    assert spread["he"] > 0.01 > 0.002 > spread["torchvision"]
    with pytest.raises(ValueError, match="init must be one of"):
        models.create_model("alexnet", init="xavier")


def test_googlenet_aux_heads_train_only():
    model = models.create_model("googlenet", num_classes=5, aux_logits=True)
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert isinstance(out, tuple) and len(out) == 3
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_unknown_model():
    with pytest.raises(KeyError, match="unknown arch"):
        models.create_model("resnet9000")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_sane(name):
    r = models.get_recipe(name)
    assert r.name == name and r.arch in NETS
    assert r.momentum == 0.9 and r.weight_decay == 1e-4
    assert r.epochs > 0 and r.lr(1) > 0 and r.lr(8) > 0
    assert r.global_batch(1) > 0 and r.global_batch(8) % 8 == 0
    assert r.image_size >= models.min_image_size(r.arch) and r.val_resize > r.image_size
    assert r.lr_scheduler in ("cosine", "step", "exponential", "constant", "linear")


@pytest.mark.parametrize("name,batch1,batch8,lr1,lr8", [
    ("alexnet_modelzoo", 128, 1024, 0.01, 0.04),
    ("vgg16_modelzoo", 256, 2048, 0.01, 0.08),
    ("googlenet_modelzoo", 512, 4096, 0.1, 0.9),
    ("googlenet_mindspore", 256, 2048, 0.1, 0.1),
    ("inception_resnet_v2_modelzoo", 192, 1536, 0.075, 0.6),
])
def test_recipe_seed_values(name, batch1, batch8, lr1, lr8):
    r = models.get_recipe(name)
    assert (r.global_batch(1), r.global_batch(8), r.lr(1), r.lr(8)) == (batch1, batch8, lr1, lr8)
    # other world sizes: the 8p per-device batch and the 8p lr scaled linearly
    if r.per_device_batch is None:
        assert r.global_batch(2) == batch8 // 4 and r.lr(2) == pytest.approx(lr8 / 4)


def test_torchvision_googlenet_weights_file_sets_transform_input(tmp_path):
    from classify.pretrained import load_pretrained

    path = tmp_path / "googlenet-1378be20.pth"  # torchvision's file name for its ImageNet weights
    torch.save(models.create_model("googlenet", num_classes=1000).state_dict(), path)
    assert load_pretrained(str(path), "googlenet").get("torchvision") is True
    other = tmp_path / "mine.pth"
    torch.save(models.create_model("googlenet", num_classes=1000).state_dict(), other)
    assert not load_pretrained(str(other), "googlenet").get("torchvision")
