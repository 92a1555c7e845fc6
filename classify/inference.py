"""A trained network ready for inference: ``tools/predict.py`` and ``tools/export_onnx.py``.

    load_trained_model(path, arch=None) -> TrainedModel
    build_inference_model(arch, num_classes=..., train_kwargs=...) -> nn.Module (eval mode)

The inference model is built from the net's ``ModelEntry``: ``entry.inference_build_kwargs``
turns the kwargs training used into the eval-only ones (a net drops its training-only heads
there), and the state-dict keys the entry declares optional may be missing from, or extra
in, the checkpoint. Nothing here names a network.
"""

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, List, Mapping, Optional, Tuple

import torch.nn as nn

import models
from models.recipe import IMAGENET_MEAN, IMAGENET_STD

from .blurpool import apply_blurpool
from .checkpoint import clean_state_dict, load_checkpoint, load_model_weights
from .errors import CheckpointError

__all__ = ["TrainedModel", "load_trained_model", "build_inference_model"]

# Preprocessing for a checkpoint that names neither its run's settings nor a known recipe.
_FALLBACK = SimpleNamespace(image_size=224, val_resize=256, mean=IMAGENET_MEAN, std=IMAGENET_STD)


@dataclass
class TrainedModel:
    """A network in eval mode on the CPU plus what is needed to feed it like the trainer did."""

    model: nn.Module
    arch: str
    num_classes: int
    classes: List[str]  # may be empty: print indices then
    image_size: int
    val_resize: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]


def build_inference_model(arch: str, *, num_classes: int, train_kwargs: Optional[Mapping[str, Any]] = None
                          ) -> nn.Module:
    """The eval-mode inference model of ``arch``, from the build kwargs training used."""
    kwargs = models.get_model_entry(arch).inference_build_kwargs(dict(train_kwargs or {}))
    return models.create_model(arch, num_classes=num_classes, **kwargs).eval()


def load_trained_model(path, arch: Optional[str] = None, *, ema: bool = False) -> TrainedModel:
    """Build the checkpoint's inference network (``entry.inference_build_kwargs``) with its
    weights, in eval mode. ``arch`` (``--arch``) is needed only for a bare state_dict without one.
    ``ema``: the EMA weights (``state_dict_ema``, a ``--model-ema`` run's) instead."""
    state = load_checkpoint(path)
    if ema:
        if state.get("state_dict_ema") is None:
            raise CheckpointError(f"checkpoint '{path}' holds no EMA weights (state_dict_ema); it comes from a run "
                                  "without --model-ema: drop --ema")
        state = {**state, "state_dict": state["state_dict_ema"]}
    arch = state.get("arch") or arch
    if not arch:
        raise CheckpointError(f"checkpoint '{path}' does not name its network; pass --arch "
                              f"({', '.join(models.list_models())})")
    if arch not in models.list_models():
        raise CheckpointError(f"checkpoint '{path}' is for '{arch}', which this code does not know; "
                              f"known: {', '.join(models.list_models())}")
    saved = state.get("args") or {}  # the run's resolved flags, as the checkpoint holds them
    recipe_name = state.get("recipe") or models.default_recipe(arch)
    recipe = models.get_recipe(recipe_name) if recipe_name in models.list_recipes() else _FALLBACK
    classes = [str(c) for c in state.get("classes") or []]
    num_classes = saved.get("num_classes") or len(classes) or _classifier_width(state["state_dict"], arch)
    model = build_inference_model(arch, num_classes=num_classes, train_kwargs=saved.get("model_kwargs"))
    if saved.get("blurpool"):  # trained with --blurpool: the same filters (no weights of their own)
        apply_blurpool(model)
    load_model_weights(model, state, path=path, arch=arch)
    model.eval()

    def pick(key):  # the run's value (flags included), else its recipe's
        value = saved.get(key)
        return getattr(recipe, key) if value is None else value

    return TrainedModel(model=model, arch=arch, num_classes=num_classes, classes=classes,
                        image_size=int(saved.get("val_crop_size") or pick("image_size")),  # the val crop
                        val_resize=int(pick("val_resize")),
                        mean=tuple(pick("mean")), std=tuple(pick("std")))


def _classifier_width(state_dict, arch: str) -> int:
    """Number of classes of a bare state_dict: rows of its last 2-D weight (the classifier),
    skipping the keys ``arch``'s entry declares optional (training-only heads)."""
    entry = models.get_model_entry(arch)
    weights = [v for k, v in clean_state_dict(state_dict).items()
               if k.endswith("weight") and getattr(v, "ndim", 0) == 2 and not entry.is_optional_key(k)]
    if not weights:
        raise CheckpointError("cannot tell the number of classes from the checkpoint (no classifier weight)")
    return int(weights[-1].shape[0])
