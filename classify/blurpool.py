"""``--blurpool``: anti-aliased downsampling (Zhang, ICML 2019, "Making Convolutional Networks
Shift-Invariant Again"), as FFCV's and MosaicML Composer's ResNet-50 recipes use it.

A fixed 3x3 binomial low-pass filter ([1, 2, 1] x [1, 2, 1] / 16, depthwise, stride 1, zero padding:
FFCV's ``BlurPoolConv2d``) runs on the input of every strided convolution with at least 16 input
channels (FFCV's and Composer's rule: the stem's RGB convolution is left alone) and of every strided
max-pool, so the subsampling that follows sees a band-limited signal. Output sizes are unchanged.

The filter has no parameters and no buffer: it is two 2x2 average pools at stride 1 ([1, 1] / 2 twice
in each direction is [1, 2, 1] / 4; the first pads with zeros, as the convolution would), applied by a
forward pre-hook. Pooling keeps the memory format and runs in bf16 at full speed on a CPU, where a
depthwise ``conv2d`` on NHWC tensors took 6x the step of GoogLeNet. The state dict has exactly the keys
of the plain network, so checkpoints strict-load
into torchvision/timm models (which then run without the blur: evaluate a blurpool-trained network with
``--blurpool`` to get the accuracy it was trained for; ``classify.inference`` does so from the checkpoint).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["apply_blurpool", "blurred_layers", "blur", "MIN_CHANNELS"]

MIN_CHANNELS = 16  # FFCV's and Composer's: convolutions on fewer input channels (the RGB stem) keep theirs
_MARK = "_blurpool"  # set on a layer that has the hook (apply_blurpool is idempotent)


def _strided(module: nn.Module) -> bool:
    stride = module.stride if isinstance(module.stride, (tuple, list)) else (module.stride,)
    return max(stride) > 1


def _wants_blur(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return _strided(module) and module.in_channels >= MIN_CHANNELS and module.groups == 1
    return isinstance(module, nn.MaxPool2d) and _strided(module)


def blur(x: torch.Tensor) -> torch.Tensor:
    """[1, 2, 1] x [1, 2, 1] / 16 per channel, zero padding, same size."""
    return F.avg_pool2d(F.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=True), 2, stride=1)


def _blur_input(module: nn.Module, inputs):
    """Forward pre-hook: the layer's input, low-pass filtered per channel (same size)."""
    return (blur(inputs[0]),) + tuple(inputs[1:])


def apply_blurpool(model: nn.Module) -> nn.Module:
    """Add the blur in place (idempotent); returns ``model``."""
    for module in model.modules():
        if not _wants_blur(module) or getattr(module, _MARK, False):
            continue
        setattr(module, _MARK, True)
        module.register_forward_pre_hook(_blur_input)
    return model


def blurred_layers(model: nn.Module) -> int:
    """How many layers get the blur (the run's header says it)."""
    return sum(1 for m in model.modules() if getattr(m, _MARK, False))
