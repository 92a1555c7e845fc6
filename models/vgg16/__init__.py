"""VGG16, built with torchvision's builder; recipe from the Ascend ModelZoo VGG16 seed."""

import torch.nn as nn
from torchvision.models import vgg16

from ..entry import ModelEntry
from ..recipe import Recipe, fast_recipe

__all__ = ["ENTRY", "build", "RECIPES", "MIN_IMAGE_SIZE"]


MIN_IMAGE_SIZE = 32  # five 2x2 max-pools


def build(num_classes: int = 1000, **kwargs) -> nn.Module:
    return vgg16(weights=None, num_classes=num_classes, **kwargs)


RECIPES = {
    "vgg16_modelzoo": Recipe(
        name="vgg16_modelzoo", arch="vgg16", seed_name="Ascend ModelZoo VGG16 (PyTorch)",
        epochs=120, lr_1p=0.01, lr_8p=0.08, batch_size_1p=256, batch_size_8p=2048,
        lr_scheduler="cosine", opt_level="O2", loss_scale=8.0, seed=49,
    ),
}
# The seed's network, batch and lr on a 32-epoch budget (README, "Fast recipe"); no BatchNorm: no EMA.
RECIPES["vgg16_fast"] = fast_recipe(RECIPES["vgg16_modelzoo"], epochs=32)


ENTRY = ModelEntry(name="vgg16", build=build, recipes=RECIPES, default_recipe="vgg16_modelzoo",
                   min_image_size=MIN_IMAGE_SIZE, head=("classifier.6",),
                   network="Vgg16_ID1630_for_PyTorch")  # its folder: the seed's main.py, examples lines
