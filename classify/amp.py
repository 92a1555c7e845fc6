"""Mixed precision with native torch.amp, with the apex flags users know mapped onto it.

- ``--opt-level O0``: fp32. ``O1``/``O2``/``O3``: autocast (apex's O2 "fp16 model, fp32
  master weights" is what autocast + fp32 parameters gives, without a model cast).
- dtype: bf16 where the device supports it (no loss scaling needed), else fp16 with a
  ``GradScaler``; ``--loss-scale N`` starts the scaler at N and keeps it there unless a
  step overflows (apex's static scale), ``--loss-scale dynamic`` lets it grow.
- On CPU AMP is off unless ``--amp`` is given.
"""

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

from .devices import supports_bf16

__all__ = ["AmpSettings", "resolve_amp", "autocast", "make_scaler"]


@dataclass(frozen=True)
class AmpSettings:
    enabled: bool
    dtype: Optional[torch.dtype]  # None when disabled
    loss_scale: Optional[float]  # None = dynamic; only used with fp16

    @property
    def name(self) -> str:
        return "off" if not self.enabled else str(self.dtype).replace("torch.", "")


def resolve_amp(device: torch.device, *, asked: bool, opt_level: Optional[str], recipe_opt_level: str,
                loss_scale: Optional[float], dtype: str = "auto") -> AmpSettings:
    """``asked`` is --amp/--apex; ``opt_level`` is the flag (or None), else the recipe's."""
    level = opt_level or ("O1" if asked and recipe_opt_level == "O0" else recipe_opt_level)
    if level == "O0":
        enabled = False
    elif device.type == "cpu":
        enabled = asked
    else:
        enabled = True  # accelerators follow the recipe (the seeds all train in mixed precision)
    if not enabled:
        return AmpSettings(False, None, None)
    if dtype == "auto":
        dtype = "bf16" if supports_bf16(device) else "fp16"
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
    return AmpSettings(True, torch_dtype, loss_scale)


def autocast(device: torch.device, amp: AmpSettings):
    if not amp.enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp.dtype)


def make_scaler(device: torch.device, amp: AmpSettings) -> Optional["torch.amp.GradScaler"]:
    """A grad scaler for fp16 only (bf16 has fp32's range)."""
    if not amp.enabled or amp.dtype != torch.float16:
        return None
    if amp.loss_scale is None:
        return torch.amp.GradScaler(device.type)
    # apex static loss scale: start at N, never grow; an overflow still skips the step.
    return torch.amp.GradScaler(device.type, init_scale=amp.loss_scale, growth_interval=2**31 - 1)
