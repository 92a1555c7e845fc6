"""Inception-ResNet-v2 (defined here with timm's key names); recipe from the Ascend ModelZoo seed."""

import torch.nn as nn

from ..entry import ModelEntry
from ..recipe import Recipe, fast_recipe
from .model import InceptionResNetV2, inception_resnet_v2

__all__ = ["ENTRY", "build", "RECIPES", "MIN_IMAGE_SIZE", "InceptionResNetV2"]


MIN_IMAGE_SIZE = 75  # valid-padded stem and reductions


def build(num_classes: int = 1000, **kwargs) -> nn.Module:
    return inception_resnet_v2(num_classes=num_classes, **kwargs)


RECIPES = {
    "inception_resnet_v2_modelzoo": Recipe(
        name="inception_resnet_v2_modelzoo", arch="inception_resnet_v2",
        seed_name="Ascend ModelZoo Inception-ResNet-v2 (PyTorch)",
        epochs=240, lr_1p=0.075, lr_8p=0.6, batch_size_1p=192, batch_size_8p=1536,
        lr_scheduler="cosine", label_smoothing=0.1, opt_level="O2", loss_scale=128.0,
        image_size=299, val_resize=342, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), seed=49,
    ),
}
# The seed's batch, lr and 299 px on a 40-epoch budget, with the EMA of its BatchNorm net (README, "Fast recipe").
RECIPES["inception_resnet_v2_fast"] = fast_recipe(RECIPES["inception_resnet_v2_modelzoo"], epochs=40, ema=True)


ENTRY = ModelEntry(name="inception_resnet_v2", build=build, recipes=RECIPES,
                   default_recipe="inception_resnet_v2_modelzoo", min_image_size=MIN_IMAGE_SIZE,
                   head=("classif",),
                   # its folder: the seed's "[npu id: 0 ]"-prefixed lines, its train_8p.py
                   network="InceptionResNetV2_ID1779_for_PyTorch", log_format="prefixed", main_8p=True)
