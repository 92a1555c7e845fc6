"""A tiny CNN registered as ``tinynet`` for engine tests (the tests are about the engine,
not the architecture, so they use a net that trains in milliseconds on a CPU)."""

import torch.nn as nn

import models
from models.recipe import Recipe

RECIPE = Recipe(name="tinynet_modelzoo", arch="tinynet", seed_name="test", epochs=2, lr_1p=0.05, lr_8p=0.1,
                batch_size_1p=8, batch_size_8p=64, lr_scheduler="cosine", label_smoothing=0.1,
                image_size=32, val_resize=36, seed=7)


def build(num_classes: int = 1000, **kwargs) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, num_classes))


def register() -> None:
    if "tinynet" not in models.list_models():
        models.register_model("tinynet", build, {RECIPE.name: RECIPE}, min_image_size=8)
