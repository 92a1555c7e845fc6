"""Mixed precision with native torch.amp, with the apex flags users know mapped onto it.

- ``--opt-level O0``: fp32. ``O1``/``O2``/``O3``: autocast (apex's O2 "fp16 model, fp32
  master weights" is what autocast + fp32 parameters gives, without a model cast).
- dtype: bf16 where the device supports it (no loss scaling needed), else fp16 with a
  ``GradScaler``; ``--loss-scale N`` starts the scaler at N and keeps it there unless a
  step overflows (apex's static scale), ``--loss-scale dynamic`` lets it grow.
- On a CPU that computes bf16 natively (``devices.cpu_native_bf16``: AVX512_BF16, AMX-BF16,
  Arm BF16) the recipe's mixed precision is on by default, in bf16, as on accelerators: the
  demo set's Acc@1 after the quick start's 3 epochs is within fp32's run-to-run noise (see the
  README's Speed section), and the step is faster. On other CPUs bf16 is emulated (slower than
  fp32), so AMP is off there unless ``--amp`` (or ``--amp-dtype bf16|fp16``) asks for it.
- ``--amp-dtype fp32`` (or ``--opt-level O0``) turns autocast off on every device.
"""

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

from .devices import cpu_native_bf16, supports_bf16

__all__ = ["AmpSettings", "resolve_amp", "autocast", "make_scaler", "AMP_DTYPES"]

AMP_DTYPES = ("auto", "bf16", "fp16", "fp32")  # --amp-dtype


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
    """``asked`` is --amp/--apex; ``opt_level`` is the flag (or None), else the recipe's;
    ``dtype`` is --amp-dtype (an explicit bf16/fp16 asks for AMP too, fp32 turns it off)."""
    asked = asked or dtype in ("bf16", "fp16")
    level = opt_level or ("O1" if asked and recipe_opt_level == "O0" else recipe_opt_level)
    if level == "O0" or dtype == "fp32":
        enabled = False
    elif device.type == "cpu":
        enabled = asked or cpu_native_bf16()
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
