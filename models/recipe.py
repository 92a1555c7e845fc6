"""Recipes: the seeds' hyperparameters as plain data.

A recipe is the set of defaults a seed README trained with. Every flag given on the
command line wins over the recipe (see ``classify.resolve``). Values are given for the
seed's 8-device run and its 1-device run; the trainer picks the pair that matches
the number of devices.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["Recipe", "IMAGENET_MEAN", "IMAGENET_STD", "FAST_LEVERS", "fast_recipe"]

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
    # Defaults of the lever flags beyond the seeds' hyperparameters (classify.cli and classify.resolve, "levers"), keyed by
    # the flag's dest; a flag given on the command line wins. Sizes and epochs are relative to the run's
    # (see FAST_LEVERS). The seeds' recipes set none.
    levers: Mapping[str, Any] = field(default_factory=dict)

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


# ----------------------------------------------------------------------------- fast recipes (issue #24)
# The levers every <net>_fast recipe sets, relative to the run's image size S and epoch budget E, so that
# they hold for any --epochs and --image-size (the demo set's 64 px as ImageNet's 224):
# - progressive_resize (start, end, from, to): train at 0.625 S up to 0.65 E, ramp to S by 0.85 E (FFCV's
#   ResNet-50 configs: 160 -> 192 px between epochs 11 and 13 of 16, 65 and 76 of 88; 160 px is 0.625 of
#   their 256 px evaluation; at 224 px this starts at 140);
# - progressive_min_size: the low-resolution epochs never go below 128 px (nor, below that, under the run's own
#   size: a run at 64 px trains at 64 throughout). These networks downsample by 32: below 128 px their last
#   feature maps are 4x4 or less, and the cheaper epochs cost more accuracy than they save (measured on 64 px
#   digits, docs/performance-fast.md: a 40 px first epoch cost GoogLeNet 15 points of Acc@1 after 2 epochs);
# - val_crop_ratio: evaluate at 8/7 S (FFCV trains at <= 192 and tests at 256, Composer's mild recipe 176 / 232:
#   a random-resized-crop net sees objects larger than a centre crop of the same size shows them, Touvron et
#   al. 2019 "FixRes");
# - warmup_fraction: a linear lr warm-up over E/8 (FFCV: peak at epoch 2 of 16);
# - norm_weight_decay, bias_weight_decay 0 (FFCV, Composer; torchvision's references for their recent nets);
# - tta: flip test-time augmentation at every evaluation (FFCV; --tta, LoopConfig.tta: a flag given wins).
FAST_LEVERS: Dict[str, Any] = {
    "progressive_resize": (0.625, 1.0, 0.65, 0.85),
    "progressive_min_size": 128,
    "val_crop_ratio": 8 / 7,
    "warmup_fraction": 0.125,
    "norm_weight_decay": 0.0,
    "bias_weight_decay": 0.0,
    "tta": "flip",
}
# EMA of the weights (timm's decay warm-up, so that a short run's average forgets the random init):
# the nets with BatchNorm, as Composer's ResNet-50 recipes; the EMA's Acc@1 counts when it is higher.
FAST_EMA: Dict[str, Any] = {"model_ema": True, "model_ema_warmup": True}


def fast_recipe(seed: "Recipe", *, epochs: int, ema: bool = False, label_smoothing: float = 0.1,
                **changes) -> "Recipe":
    """``<arch>_fast``: the seed's network, batch, lr and augmentation with a short schedule
    (``epochs``, the default of --epochs): warm-up then a linear lr decay to 0 at the budget's end
    (Li et al., ICLR 2020, "Budgeted Training"), label smoothing, progressive resizing, a higher
    evaluation resolution, no weight decay on norm and bias parameters, flip TTA at the end, and
    (``ema``) an EMA of the weights. ``changes``: any other field of the recipe (e.g. ``lr_1p``)."""
    levers = {**FAST_LEVERS, **(FAST_EMA if ema else {}), **changes.pop("levers", {})}
    return dataclasses.replace(
        seed, name=f"{seed.arch}_fast", seed_name=f"{seed.seed_name}, fast schedule (FFCV / Composer / Budgeted "
        "Training)", epochs=epochs, lr_scheduler="linear", lr_epochs=(), warmup_epochs=0,
        label_smoothing=label_smoothing, levers=levers, **changes)
