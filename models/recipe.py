"""Recipes: the seeds' hyperparameters as plain data.

A recipe is the set of defaults a seed README trained with. Every flag given on the
command line wins over the recipe (see ``classify.resolve``). Values are given for the
seed's 8-device run and its 1-device run; the trainer picks the pair that matches
the number of devices.
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

__all__ = ["Recipe", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Recipe:
    name: str
    arch: str
    seed_name: str  # where the numbers come from
    epochs: int
    lr_1p: float
    lr_8p: float
    # Global batch (all devices of the node). ``per_device_batch`` wins when set
    # (the MindSpore seed gives a per-device batch, not a global one).
    batch_size_1p: int
    batch_size_8p: int
    per_device_batch: Optional[int] = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    lr_scheduler: str = "cosine"  # cosine | step | exponential | constant
    lr_epochs: Tuple[int, ...] = ()  # step/exponential milestones
    lr_step: int = 30  # step schedule: decay every N epochs
    lr_gamma: float = 0.1
    warmup_epochs: int = 0
    opt_level: str = "O0"  # apex-style: O0 fp32, O1 autocast, O2 autocast + fp32 master
    loss_scale: Optional[float] = None  # None = dynamic
    image_size: int = 224
    val_resize: int = 256
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    color_jitter: float = 0.0
    seed: int = 49
    model_kwargs: dict = field(default_factory=dict)

    def global_batch(self, world_size: int) -> int:
        """The seed's 1p batch on one device; with N devices the 8p per-device batch times N."""
        if self.per_device_batch:
            return self.per_device_batch * world_size
        if world_size == 1:
            return self.batch_size_1p
        return self.batch_size_8p // 8 * world_size

    def lr(self, world_size: int) -> float:
        """The seed's lr for that global batch: 1p value, or the 8p value scaled linearly by N/8."""
        if self.per_device_batch or world_size == 1:
            return self.lr_1p
        return self.lr_8p * world_size / 8
