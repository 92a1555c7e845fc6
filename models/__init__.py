"""Model registry: the four seed networks and their recipes.

    create_model(name, num_classes=1000, **kw) -> nn.Module
    list_models() -> ["alexnet", "vgg16", "googlenet", "inception_resnet_v2"]
    get_recipe(name) -> Recipe
    list_recipes() -> names of every recipe
    default_recipe(arch) -> the net's ModelZoo recipe name
    min_image_size(arch) -> the smallest input the net accepts
    register_model(name, build, recipes, min_image_size) -> add a network (tests, user nets)
"""

from types import SimpleNamespace
from typing import Callable, Dict, List

import torch.nn as nn

from . import alexnet, googlenet, inception_resnet_v2, vgg16
from .recipe import Recipe

__all__ = ["create_model", "list_models", "get_recipe", "list_recipes", "default_recipe", "min_image_size",
           "register_model", "unregister_model", "Recipe"]

_NETS = {
    "alexnet": alexnet,
    "vgg16": vgg16,
    "googlenet": googlenet,
    "inception_resnet_v2": inception_resnet_v2,
}
_RECIPES: Dict[str, Recipe] = {name: r for net in _NETS.values() for name, r in net.RECIPES.items()}


def register_model(name: str, build: Callable[..., nn.Module], recipes: Dict[str, Recipe],
                   min_image_size: int = 32) -> None:
    """Add a network and its recipes (the first recipe named ``<name>_modelzoo`` is its default)."""
    _NETS[name] = SimpleNamespace(build=build, RECIPES=recipes, MIN_IMAGE_SIZE=min_image_size)
    _RECIPES.update(recipes)


def unregister_model(name: str) -> None:
    for recipe in _NETS.pop(name).RECIPES:
        _RECIPES.pop(recipe, None)


def min_image_size(name: str) -> int:
    return _NETS[name].MIN_IMAGE_SIZE


def list_models() -> List[str]:
    return list(_NETS)


def list_recipes() -> List[str]:
    return list(_RECIPES)


def create_model(name: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    if name not in _NETS:
        raise KeyError(f"unknown arch '{name}'; choose one of {', '.join(_NETS)}")
    return _NETS[name].build(num_classes=num_classes, **kwargs)


def get_recipe(name: str) -> Recipe:
    if name not in _RECIPES:
        raise KeyError(f"unknown recipe '{name}'; choose one of {', '.join(_RECIPES)}")
    return _RECIPES[name]


def default_recipe(arch: str) -> str:
    return f"{arch}_modelzoo"
