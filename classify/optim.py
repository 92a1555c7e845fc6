"""The optimizer: SGD with momentum and weight decay (every seed recipe's), its fastest kernel;
or torchvision references' other ``--opt`` choices with their settings (``references/classification/
train.py``): ``sgd_nesterov`` (SGD, ``nesterov=True``), ``rmsprop`` (``RMSprop(eps=0.0316,
alpha=0.9)`` with the momentum), ``adamw`` (``AdamW`` with its default betas; the momentum is unused).

Fused SGD (one kernel over all parameters) on CUDA and on the CPU, foreach (multi-tensor)
elsewhere. On the CPU the fused step is ~3x faster than the per-tensor or foreach one for
AlexNet's 61M parameters (measured here), which at small images is a large part of a step.
"""

from typing import List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["make_optimizer", "param_groups", "head_parameters", "KERNEL_KEYS", "RMSPROP_EPS", "RMSPROP_ALPHA"]

RMSPROP_EPS, RMSPROP_ALPHA = 0.0316, 0.9  # torchvision references' RMSprop (TF's EfficientNet/MobileNet recipe)

# torchvision references' set_weight_decay: the parameters of these modules are "norm" parameters
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
               nn.LocalResponseNorm)

KERNEL_KEYS = ("fused", "foreach")  # chosen by the device of this run, never taken from a checkpoint


def make_optimizer(model: nn.Module, *, lr: float, momentum: float, weight_decay: float,
                   device: torch.device, norm_weight_decay: Optional[float] = None,
                   bias_weight_decay: Optional[float] = None, head: Tuple[str, ...] = (),
                   backbone_lr_scale: float = 1.0, name: str = "sgd") -> torch.optim.Optimizer:
    """``name``: ``--opt`` (sgd | sgd_nesterov | rmsprop | adamw), over the parameters that train
    (``requires_grad``); with ``backbone_lr_scale`` != 1 the parameters outside the ``head``
    modules get ``lr`` x it (fine-tuning: the head's groups first, so that the lr the logs print
    is the head's)."""
    params = ([p for p in model.parameters() if p.requires_grad]
              if norm_weight_decay is None and bias_weight_decay is None
              else param_groups(model, weight_decay, norm=norm_weight_decay, bias=bias_weight_decay))
    if head and backbone_lr_scale != 1.0:
        params = _head_first(model, params, head=head, backbone_lr=lr * backbone_lr_scale)
    if name in ("sgd", "sgd_nesterov"):
        cls, kwargs = torch.optim.SGD, dict(momentum=momentum, nesterov=name == "sgd_nesterov")
    elif name == "rmsprop":  # no fused kernel in torch: foreach
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay, eps=RMSPROP_EPS,
                                   alpha=RMSPROP_ALPHA, foreach=True)
    elif name == "adamw":
        cls, kwargs = torch.optim.AdamW, {}
    else:
        raise ValueError(f"unknown optimizer {name!r}")
    if device.type in ("cuda", "cpu"):
        try:
            return cls(params, lr=lr, weight_decay=weight_decay, fused=True, **kwargs)
        except RuntimeError:  # a torch without the fused kernel for this device
            pass
    return cls(params, lr=lr, weight_decay=weight_decay, foreach=True, **kwargs)


def param_groups(model: nn.Module, weight_decay: float, *, norm: Optional[float] = None,
                 bias: Optional[float] = None) -> List[dict]:
    """``--norm-weight-decay``/``--bias-weight-decay`` as torchvision's ``set_weight_decay``: every
    parameter named ``bias`` gets ``bias`` (when given; it wins over ``norm``), the other
    parameters of normalisation layers ``norm`` (when given), the rest ``weight_decay``.
    Empty groups are left out."""
    groups = {"other": [], "norm": [], "bias": []}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            kind = ("bias" if bias is not None and name == "bias" else
                    "norm" if norm is not None and isinstance(module, NORM_LAYERS) else "other")
            groups[kind].append(p)
    decay = {"other": weight_decay, "norm": norm, "bias": bias}
    return [{"params": ps, "weight_decay": decay[k]} for k, ps in groups.items() if ps]


def head_parameters(model: nn.Module, head: Tuple[str, ...]) -> set:
    """The ids of the parameters of the ``head`` modules that ``model`` has."""
    found = set()
    for name in head:
        try:
            found.update(id(p) for p in model.get_submodule(name).parameters())
        except AttributeError:  # a head the model was built without (GoogLeNet's aux heads)
            continue
    return found


def _head_first(model: nn.Module, params, *, head: Tuple[str, ...], backbone_lr: float) -> List[dict]:
    """Each group split in its head part and the rest (at ``backbone_lr``), head parts first;
    empty groups left out."""
    ids = head_parameters(model, head)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    heads = [{**g, "params": [p for p in g["params"] if id(p) in ids]} for g in groups]
    rest = [{**g, "params": [p for p in g["params"] if id(p) not in ids], "lr": backbone_lr} for g in groups]
    return [g for g in heads + rest if g["params"]]
