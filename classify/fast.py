"""The fast-path choices, in one place so that the trainer and tools/bench.py share them.

- channels_last: on by default on CUDA (cuDNN's NHWC kernels with tensor cores) and on CPU
  (oneDNN's NHWC kernels: 1.11-1.23x per fp32 training step for AlexNet, VGG16 and GoogLeNet on
  an AVX-512 CPU, issue #16's measurement; ``tools/bench.py --precision`` measures it per net);
  it changes no numbers beyond float summation order. Off on NPU unless asked
  (``--channels-last``); ``--no-channels-last`` turns it off.
- torch.compile: only with ``--compile`` (minutes of compile time on the big nets).
The optimizer's kernel choice (fused SGD on CUDA and CPU) lives in ``classify.optim``.
"""

from typing import Optional

import torch
import torch.nn as nn

__all__ = ["use_channels_last", "prepare_model"]


def use_channels_last(device: torch.device, flag: Optional[bool]) -> bool:
    return flag if flag is not None else device.type in ("cuda", "cpu")


def prepare_model(model: nn.Module, device: torch.device, *, channels_last: bool, compile_model: bool) -> nn.Module:
    """Move to the device (NHWC when asked); compile when asked. Returns the module to call."""
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if compile_model:
        model = torch.compile(model)
    return model
