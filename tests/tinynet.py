"""The test-only nets: ``tinynet`` for engine tests (the tests are about the engine, not the
architecture, so they use a net that trains in milliseconds on a CPU) and ``tinyflat`` for the
distributed tests (registered by them alone; see ``register_flat``)."""

import torch.nn as nn

import models
from models import ModelEntry
from models.recipe import Recipe

RECIPE = Recipe(name="tinynet_modelzoo", arch="tinynet", seed_name="test", epochs=2, lr_1p=0.05, lr_8p=0.1,
                batch_size_1p=8, batch_size_8p=64, lr_scheduler="cosine", label_smoothing=0.1,
                image_size=32, val_resize=36, seed=7)

FLAT = "tinyflat"
FLAT_RECIPE = Recipe(name="tinyflat_modelzoo", arch=FLAT, seed_name="test", epochs=3, lr_1p=0.1, lr_8p=0.1,
                     batch_size_1p=8, batch_size_8p=64, lr_scheduler="cosine", image_size=32, val_resize=36,
                     seed=7)


def build(num_classes: int = 1000, **kwargs) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, num_classes))


def build_flat(num_classes: int = 1000, **kwargs) -> nn.Module:
    # No BatchNorm, no dropout: N ranks on a global batch compute exactly what one process
    # computes on it, so 1p and Np training agree to float rounding and a wrong gradient
    # average cannot hide behind per-rank batch statistics.
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))


def register() -> None:
    if "tinynet" not in models.list_models():
        models.register_model(ModelEntry(name="tinynet", build=build, recipes={RECIPE.name: RECIPE},
                                         default_recipe=RECIPE.name, min_image_size=8, head=("9",)))


def register_flat() -> None:
    """``tinyflat`` too (the distributed tests; they unregister it when done, so that the other
    files' model lists stay as they are)."""
    register()
    if FLAT not in models.list_models():
        models.register_model(ModelEntry(name=FLAT, build=build_flat, recipes={FLAT_RECIPE.name: FLAT_RECIPE},
                                         default_recipe=FLAT_RECIPE.name, min_image_size=8, head=("6",)))
