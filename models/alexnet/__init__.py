"""AlexNet, built with torchvision's builder; recipe from the Ascend ModelZoo AlexNet seed."""

import torch.nn as nn
from torchvision.models import alexnet

from ..recipe import Recipe

__all__ = ["build", "RECIPES", "MIN_IMAGE_SIZE"]


MIN_IMAGE_SIZE = 63  # conv1 stride 4 + three 3x3/2 max-pools


def build(num_classes: int = 1000, **kwargs) -> nn.Module:
    return alexnet(weights=None, num_classes=num_classes, **kwargs)


RECIPES = {
    "alexnet_modelzoo": Recipe(
        name="alexnet_modelzoo", arch="alexnet", seed_name="Ascend ModelZoo AlexNet (PyTorch)",
        epochs=90, lr_1p=0.01, lr_8p=0.04, batch_size_1p=128, batch_size_8p=1024,
        lr_scheduler="cosine", label_smoothing=0.1, opt_level="O2", loss_scale=1024.0, seed=49,
    ),
}
