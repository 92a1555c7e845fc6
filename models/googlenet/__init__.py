"""GoogLeNet (Inception v1 with BatchNorm), built with torchvision's builder.

Two recipes: the Ascend ModelZoo PyTorch seed and the MindSpore seed (BN, exponential
decay, label smoothing, warm-up). ``aux_logits=True`` keeps the two auxiliary heads for
training; the trainer then uses loss = ce(main) + 0.3 * (ce(aux1) + ce(aux2)) and the
model returns only the main head in eval mode (torchvision's behaviour).
"""

import torch.nn as nn
from torchvision.models import googlenet

from ..recipe import Recipe

__all__ = ["build", "RECIPES", "MIN_IMAGE_SIZE"]


MIN_IMAGE_SIZE = 32  # stride 2 stem + four 3x3/2 max-pools (ceil mode)


def build(num_classes: int = 1000, aux_logits: bool = False, **kwargs) -> nn.Module:
    # init_weights=True: torchvision's truncated-normal init (its default for weights=None,
    # stated explicitly to silence its FutureWarning).
    return googlenet(weights=None, num_classes=num_classes, aux_logits=aux_logits,
                     init_weights=True, **kwargs)


RECIPES = {
    "googlenet_modelzoo": Recipe(
        name="googlenet_modelzoo", arch="googlenet", seed_name="Ascend ModelZoo GoogLeNet (PyTorch)",
        epochs=90, lr_1p=0.1, lr_8p=0.9, batch_size_1p=512, batch_size_8p=4096,
        lr_scheduler="step", lr_step=30, lr_gamma=0.1, opt_level="O1", loss_scale=1024.0, seed=1234,
    ),
    "googlenet_mindspore": Recipe(
        name="googlenet_mindspore", arch="googlenet", seed_name="MindSpore ModelZoo GoogLeNet",
        epochs=300, lr_1p=0.1, lr_8p=0.1, batch_size_1p=256, batch_size_8p=2048, per_device_batch=256,
        lr_scheduler="exponential", lr_epochs=(70, 140, 210, 280), lr_gamma=0.3, warmup_epochs=5,
        label_smoothing=0.1, opt_level="O2", color_jitter=0.4, seed=1234,
    ),
}
