"""ResNet-50, built with torchvision's builder; recipe: torchvision's classic ResNet recipe.

The recipe is the one torchvision's reference scripts state for ResNet
(pytorch/vision ``references/classification/README.md``, "ResNet": ``torchrun
--nproc_per_node=8 train.py --model resnet50`` with the README's default parameters
``--batch_size 32 --epochs 90 --lr 0.1 --momentum 0.9 --wd 1e-4 --lr-step-size 30
--lr-gamma 0.1``): SGD at lr 0.1 for 8 x 32 = 256 images, x0.1 at epochs 30 and 60 of 90.
It is what ``ResNet50_Weights.IMAGENET1K_V1`` (76.130 / 92.862) was trained with. The same
README asks to scale the lr with the batch for another number of GPUs; the 1-device
values here do that (32 images, lr 0.0125).

Its folder (models/resnet50/) has no seed of its own: its scripts' CaseName starts with the
arch (``resnet50_bs256_8p_acc``), its log lines are the suite's default (``--log-format
examples``), and its 8-device scripts start the top-level ``main_8p.py``.
"""

import torch.nn as nn
from torchvision.models import resnet50

from ..entry import ModelEntry
from ..recipe import Recipe, fast_recipe

__all__ = ["ENTRY", "build", "RECIPES", "MIN_IMAGE_SIZE"]


MIN_IMAGE_SIZE = 32  # total stride 32 (stem conv + max-pool + three stride-2 stages): 1x1 before the pool


def build(num_classes: int = 1000, **kwargs) -> nn.Module:
    """torchvision's ResNet-50 (Kaiming-normal convolutions, BatchNorm weight 1 / bias 0), untrained."""
    return resnet50(weights=None, num_classes=num_classes, **kwargs)


RECIPES = {
    "resnet50_torchvision": Recipe(
        name="resnet50_torchvision", arch="resnet50",
        seed_name="torchvision references/classification (ResNet, the README's default parameters)",
        epochs=90, lr_1p=0.0125, lr_8p=0.1, batch_size_1p=32, batch_size_8p=256,  # 32 per device; 0.1 per 256
        lr_scheduler="step", lr_step=30, lr_gamma=0.1,  # StepLR(step_size=30, gamma=0.1): x0.1 at 30, 60
        momentum=0.9, weight_decay=1e-4, label_smoothing=0.0,
        opt_level="O0",  # the recipe trains in fp32 (train.py's --amp is off by default)
        image_size=224, val_resize=256,  # train.py's defaults: RandomResizedCrop 224; Resize 256 + CenterCrop 224
    ),
}
# Time to accuracy (issue #24): the seed's net, batch and lr with FFCV's short-schedule levers
# (models/recipe.py, fast_recipe); FFCV's own ResNet-50 configs run 16 to 88 epochs.
RECIPES["resnet50_fast"] = fast_recipe(RECIPES["resnet50_torchvision"], epochs=32)

# Its folder's facts are the defaults: network = the arch, log format "examples", no main_8p.py.
ENTRY = ModelEntry(name="resnet50", build=build, recipes=RECIPES, default_recipe="resnet50_torchvision",
                   min_image_size=MIN_IMAGE_SIZE, head=("fc",))
