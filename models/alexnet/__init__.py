"""AlexNet, built with torchvision's builder; recipe from the Ascend ModelZoo AlexNet seed."""

import torch.nn as nn
from torchvision.models import alexnet

from ..entry import ModelEntry
from ..recipe import Recipe, fast_recipe

__all__ = ["ENTRY", "build", "INITS", "RECIPES", "MIN_IMAGE_SIZE"]


MIN_IMAGE_SIZE = 63  # conv1 stride 4 + three 3x3/2 max-pools


INITS = ("he", "torchvision")


def build(num_classes: int = 1000, init: str = "he", **kwargs) -> nn.Module:
    """torchvision's AlexNet; ``init="he"`` (default) re-initialises its weights.

    torchvision leaves AlexNet at PyTorch's layer defaults (uniform, variance 1/(3 fan_in),
    random biases): through 8 ReLU layers the signal shrinks ~6x per layer, the logits
    hardly depend on the image and SGD sits at chance for hundreds of steps before it
    gets going. He init (zero-mean normal, variance 2/fan, zero biases; what torchvision
    does for VGG's convolutions) keeps the signal's scale, so training starts at once.
    ``init="torchvision"`` keeps torchvision's defaults. Same layers and keys either way.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    model = alexnet(weights=None, num_classes=num_classes, **kwargs)
    if init == "he":
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return model


RECIPES = {
    "alexnet_modelzoo": Recipe(
        name="alexnet_modelzoo", arch="alexnet", seed_name="Ascend ModelZoo AlexNet (PyTorch)",
        epochs=90, lr_1p=0.01, lr_8p=0.04, batch_size_1p=128, batch_size_8p=1024,
        lr_scheduler="cosine", label_smoothing=0.1, opt_level="O2", loss_scale=1024.0, seed=49,
    ),
}
# The seed's network, batch and lr on a 32-epoch budget (README, "Fast recipe"); no BatchNorm: no EMA.
RECIPES["alexnet_fast"] = fast_recipe(RECIPES["alexnet_modelzoo"], epochs=32)


ENTRY = ModelEntry(name="alexnet", build=build, recipes=RECIPES, default_recipe="alexnet_modelzoo",
                   min_image_size=MIN_IMAGE_SIZE, head=("classifier.6",),
                   network="AlexNet_ID2663_for_PyTorch",  # its folder: the seed's main.py, examples lines
                   # CPU defaults (issue #24): oneDNN's NHWC kernels cost AlexNet's training step on a CPU
                   # (its 11x11/4 stem and 58M-parameter classifier), see README "Fast recipe"
                   cpu_channels_last=False)
