"""GoogLeNet (Inception v1 with BatchNorm), built with torchvision's builder.

Two recipes: the Ascend ModelZoo PyTorch seed and the MindSpore seed (BN, exponential
decay, label smoothing, warm-up).

Its quirks live here, as hooks of its ``ModelEntry``:
- ``aux_logits=True`` (``--aux-logits``) keeps the two auxiliary heads for training; in
  training mode torchvision's model then returns ``(logits, aux2, aux1)`` and the loss is
  ce(main) + 0.3 * (ce(aux1) + ce(aux2)) (Szegedy et al., 2014, "Going deeper with
  convolutions", section 5: during training the auxiliary losses are added to the total
  loss, weighted by 0.3). In eval mode it returns only the main head.
- the aux heads' keys (``aux1.``, ``aux2.``) may be missing from, or extra in, a checkpoint;
- torchvision's ImageNet weights were trained on inputs normalised differently and expect
  ``transform_input=True``, set after loading them;
- the inference model (predict, ONNX export) is built without the aux heads.
"""

from typing import Optional

import torch
import torch.nn as nn
from torchvision.models import googlenet

from ..entry import ModelEntry
from ..recipe import Recipe, fast_recipe

__all__ = ["ENTRY", "build", "aux_loss", "RECIPES", "MIN_IMAGE_SIZE", "AUX_WEIGHT"]


MIN_IMAGE_SIZE = 32  # stride 2 stem + four 3x3/2 max-pools (ceil mode)
AUX_WEIGHT = 0.3  # Szegedy et al. 2014, section 5
AUX_KEYS = ("aux1.", "aux2.")


def build(num_classes: int = 1000, aux_logits: bool = False, **kwargs) -> nn.Module:
    # init_weights=True: torchvision's truncated-normal init (its default for weights=None,
    # stated explicitly to silence its FutureWarning).
    return googlenet(weights=None, num_classes=num_classes, aux_logits=aux_logits,
                     init_weights=True, **kwargs)


def aux_loss(criterion: nn.Module, output, target: torch.Tensor):
    """(main logits, loss): ce(main) + 0.3 * (ce(aux1) + ce(aux2)) when the aux heads ran."""
    if not isinstance(output, tuple):  # no aux heads (aux_logits=False)
        return output, criterion(output, target)
    main, *aux = output  # torchvision's GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
    extra = sum(criterion(a, target) for a in aux if a is not None)
    return main, criterion(main, target) + AUX_WEIGHT * extra


def _after_pretrained(model: nn.Module, source: Optional[str]) -> None:
    if source == "torchvision":
        model.transform_input = True  # torchvision's ImageNet GoogLeNet weights expect it


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
# The ModelZoo seed's batch and lr on a 32-epoch budget, with the EMA of its BatchNorm net (README, "Fast
# recipe"; twice the seed's lr was measured and cost accuracy, docs/performance-fast.md).
RECIPES["googlenet_fast"] = fast_recipe(RECIPES["googlenet_modelzoo"], epochs=32, ema=True)

ENTRY = ModelEntry(name="googlenet", build=build, recipes=RECIPES, default_recipe="googlenet_modelzoo",
                   min_image_size=MIN_IMAGE_SIZE, loss=aux_loss, optional_keys=AUX_KEYS,
                   after_pretrained=_after_pretrained, train_options=("aux_logits",),
                   inference_kwargs={"aux_logits": False}, head=("fc", "aux1.fc2", "aux2.fc2"),
                   # its folder: Googlenet_ID0447's train.py lines (torchvision references), and
                   # GoogleNet_ID1623's main-8p.py
                   network="Googlenet_ID0447_for_PyTorch", log_format="torchvision", main_8p=True,
                   # the seed's train_performance_*.sh run with --print-freq 1 and average every step's img/s
                   perf_print_freq=1)
