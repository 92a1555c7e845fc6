"""Model registry: the networks of ``NETWORKS`` and their recipes, one ``ModelEntry`` each.

    create_model(name, num_classes=1000, **kw) -> nn.Module
    list_models() -> the registered networks' names, in NETWORKS' order (then any registered later)
    get_model_entry(name) -> ModelEntry (build, recipes, default recipe, quirks)
    get_recipe(name) -> Recipe
    list_recipes() -> names of every recipe
    default_recipe(arch) -> the net's default recipe name
    min_image_size(arch) -> the smallest input the net accepts
    register_model(entry) -> add a network (tests, user nets); unregister_model(name)
    DEFAULT_ARCH -> the network used when no --arch is given
"""

from importlib import import_module
from typing import Dict, List

import torch.nn as nn

from .entry import LossFn, ModelEntry, plain_loss
from .recipe import Recipe

__all__ = ["create_model", "list_models", "get_model_entry", "get_recipe", "list_recipes", "default_recipe",
           "min_image_size", "register_model", "unregister_model", "ModelEntry", "LossFn", "plain_loss", "Recipe",
           "DEFAULT_ARCH", "NETWORKS"]

DEFAULT_ARCH = "googlenet"  # the ModelZoo GoogLeNet seed's scripts are where most users start

# The networks, one line each: a folder models/<name>/ whose __init__.py defines ENTRY (a
# ModelEntry) is registered by adding its name here. Everything else (main.py, the launcher
# scripts, the tools, the tests) asks the registry.
NETWORKS = (
    "alexnet",
    "vgg16",
    "googlenet",
    "inception_resnet_v2",
    "resnet50",
)

_ENTRIES: Dict[str, ModelEntry] = {}
_RECIPES: Dict[str, Recipe] = {}


def register_model(entry: ModelEntry) -> None:
    """Add a network and its recipes. A recipe name already taken by another net is refused."""
    for name, recipe in entry.recipes.items():
        owner = _RECIPES.get(name)
        if owner is not None and owner.arch != entry.name:
            raise ValueError(f"recipe '{name}' already belongs to {owner.arch}")
        if recipe.arch != entry.name:
            raise ValueError(f"recipe '{name}' is for {recipe.arch}, not {entry.name}")
    _ENTRIES[entry.name] = entry
    _RECIPES.update(entry.recipes)


def unregister_model(name: str) -> None:
    for recipe in _ENTRIES.pop(name).recipes:
        _RECIPES.pop(recipe, None)


def get_model_entry(name: str) -> ModelEntry:
    if name not in _ENTRIES:
        raise KeyError(f"unknown arch '{name}'; choose one of {', '.join(_ENTRIES)}")
    return _ENTRIES[name]


def min_image_size(name: str) -> int:
    return get_model_entry(name).min_image_size


def default_recipe(arch: str) -> str:
    return get_model_entry(arch).default_recipe


def list_models() -> List[str]:
    return list(_ENTRIES)


def list_recipes() -> List[str]:
    return list(_RECIPES)


def create_model(name: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    return get_model_entry(name).build(num_classes=num_classes, **kwargs)


def get_recipe(name: str) -> Recipe:
    if name not in _RECIPES:
        raise KeyError(f"unknown recipe '{name}'; choose one of {', '.join(_RECIPES)}")
    return _RECIPES[name]


for _name in NETWORKS:
    register_model(import_module(f".{_name}", __name__).ENTRY)
