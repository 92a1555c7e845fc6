"""``ModelEntry``: everything the engine needs to know about one network, in one typed record.

A network's quirks (GoogLeNet's auxiliary-head loss, the state-dict keys a checkpoint may
lack, what to do after loading torchvision's weights) are fields of its entry, defined in
its own folder; the engine calls the hooks and never names a network. So are the facts of
its ModelZoo-shaped folder (``models/<net>/``): the seed's network name in the launcher
scripts' CaseName, the log format of its ``main.py``, and whether it has a ``main_8p.py``.
The folder's own files are the same in every folder (``tools/new_model.py`` writes them).
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .recipe import Recipe

__all__ = ["ModelEntry", "LossFn", "plain_loss"]

# (criterion, model output, target) -> (main-head logits, loss)
LossFn = Callable[[nn.Module, Any, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


def plain_loss(criterion: nn.Module, output: torch.Tensor, target: torch.Tensor):
    """One head: the logits are the output."""
    return output, criterion(output, target)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]  # build(num_classes=..., **kwargs) -> nn.Module
    recipes: Mapping[str, Recipe]
    default_recipe: str  # a key of ``recipes``
    min_image_size: int = 32
    loss: LossFn = plain_loss  # training loss; evaluation is always criterion(model(x), target)
    # State-dict key prefixes a checkpoint may lack or carry in addition (heads used in training only).
    optional_keys: Tuple[str, ...] = ()
    # Run on the model after loading pretrained weights; ``source`` says whose ("torchvision", or None).
    after_pretrained: Optional[Callable[[nn.Module, Optional[str]], None]] = None
    # Training kwargs a flag may set (main.py's --aux-logits -> "aux_logits").
    train_options: Tuple[str, ...] = ()
    # Overrides of the build kwargs for the inference model (predict, ONNX export).
    inference_kwargs: Dict[str, Any] = field(default_factory=dict)
    # Module names of the classifier head(s): the layers whose outputs are the classes. With
    # --pretrained on data of another class count (or -t) they start fresh (classify.pretrained).
    head: Tuple[str, ...] = ()
    # Its folder, models/<name>/ (the launcher scripts there, its main.py / main_8p.py):
    # the seed's network name, ``Network`` and the start of ``CaseName`` in the scripts' reports
    # (e.g. "AlexNet_ID2663_for_PyTorch"; default: the name itself);
    network: str = ""
    # the log format of its folder's main.py and main_8p.py, its seed's lines (a value of main.py's
    # --log-format: examples | torchvision | prefixed; another than examples needs main_8p=True,
    # as the 8p scripts of a folder without main_8p.py run the top-level one, in examples lines);
    log_format: str = "examples"
    # whether the folder has main_8p.py (its seed had a multi-device entry point of its own).
    main_8p: bool = False
    # --- run defaults of this network (issue #24); a flag given on the command line wins.
    # On a CPU: NHWC or not (None: the engine's default, classify.fast) and the autocast dtype
    # ("fp32": off; None: the engine's, bf16 on CPUs that compute it natively), where the generic choice
    # does not pay for this network (tools/bench.py --precision measures it).
    cpu_channels_last: Optional[bool] = None
    cpu_amp_dtype: Optional[str] = None
    # The --print-freq of the seed's performance scripts (a bounded --stop-step-num run without
    # validation), when it differs from the default: their log pipelines average every step line.
    perf_print_freq: Optional[int] = None

    def __post_init__(self):
        if self.default_recipe not in self.recipes:
            raise ValueError(f"{self.name}: default recipe '{self.default_recipe}' is not one of its recipes "
                             f"({', '.join(self.recipes)})")
        if not self.network:
            object.__setattr__(self, "network", self.name)  # frozen: set once, here

    def inference_build_kwargs(self, train_kwargs: Mapping[str, Any]) -> Dict[str, Any]:
        """The kwargs that build the eval-only model from the ones training used."""
        return {**train_kwargs, **self.inference_kwargs}

    def head_of(self, key: str) -> Optional[str]:
        """The head module that a state-dict key belongs to (``fc.weight`` -> ``fc``), or None."""
        module = key.rsplit(".", 1)[0]
        return module if module in self.head else None

    def is_optional_key(self, key: str) -> bool:
        return key.startswith(self.optional_keys) if self.optional_keys else False
