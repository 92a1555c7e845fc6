"""The fast-path choices, in one place so that the trainer and tools/bench.py share them.

- channels_last: on by default on CUDA (cuDNN's NHWC kernels with tensor cores) and on CPU
  (oneDNN's NHWC kernels: 1.11-1.23x per fp32 training step for AlexNet, VGG16 and GoogLeNet on
  an AVX-512 CPU, issue #16's measurement; ``tools/bench.py --precision`` measures it per net);
  it changes no numbers beyond float summation order. Off on NPU unless asked
  (``--channels-last``); ``--no-channels-last`` turns it off.
- a network's own CPU defaults (its ``ModelEntry.cpu_channels_last``/``cpu_amp_dtype``) replace the
  generic ones where those do not pay for it (``net_defaults``); a flag given wins.
- torch.compile: only with ``--compile`` (minutes of compile time on the big nets).
The optimizer's kernel choice (fused SGD on CUDA and CPU) lives in ``classify.optim``.
"""

from typing import NamedTuple, Optional

import torch
import torch.nn as nn

__all__ = ["use_channels_last", "prepare_model", "NetDefaults", "net_defaults"]


def use_channels_last(device: torch.device, flag: Optional[bool]) -> bool:
    return flag if flag is not None else device.type in ("cuda", "cpu")


def prepare_model(model: nn.Module, device: torch.device, *, channels_last: bool, compile_model: bool) -> nn.Module:
    """Move to the device (NHWC when asked); compile when asked. Returns the module to call."""
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if compile_model:
        model = torch.compile(model)
    return model


class NetDefaults(NamedTuple):
    channels_last: Optional[bool]  # the flag to pass on (None: the engine's default)
    amp_dtype: str  # --amp-dtype to pass on
    source: str  # "" when the generic defaults hold, else what the network's entry chose, for the header


def net_defaults(device: torch.device, *, channels_last: Optional[bool], amp_dtype: str, amp_asked: bool,
                 cpu_channels_last: Optional[bool], cpu_amp_dtype: Optional[str]) -> NetDefaults:
    """The memory format and autocast dtype of a run: the flags when given (``channels_last`` not
    None; ``amp_dtype`` other than auto, or ``--amp``), else on a CPU the network's own defaults
    (``cpu_*``, from its entry) where it has them, else the engine's."""
    if device.type != "cpu":
        return NetDefaults(channels_last, amp_dtype, "")
    notes = []
    if channels_last is None and cpu_channels_last is not None:
        channels_last = cpu_channels_last
        notes.append("NHWC" if channels_last else "NCHW")
    if amp_dtype == "auto" and not amp_asked and cpu_amp_dtype is not None:
        amp_dtype = cpu_amp_dtype
        notes.append(cpu_amp_dtype)
    return NetDefaults(channels_last, amp_dtype, ", ".join(notes))
