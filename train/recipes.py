"""Training recipes by name: the one place the trainer's default hyper-parameters live.

`binbot train --recipe NAME` starts from a recipe's values and any flag given replaces one of them;
TrainConfig's defaults are the seed recipe's. No TensorFlow here: `--help` reads these too.
"""

from __future__ import annotations

from typing import Any

from binbot.errors import BinbotError

# The seed's architecture and hyper-parameters, unchanged: the head trained on a frozen ImageNet base.
SEED: dict[str, Any] = {
    "image_size": 224,
    "batch_size": 32,
    "epochs": 10,
    "learning_rate": 1e-3,
    "augment": "standard",
    "fine_tune_epochs": 0,
    "fine_tune_at": 100,
    "fine_tune_learning_rate": 1e-5,
    "fine_tune_schedule": "constant",
    "class_weight": "none",
}

RECIPES: dict[str, dict[str, Any]] = {
    "seed": SEED,
    # The best measured on TrashNet: the head first, then the whole base from layer 0, cosine from 1e-4;
    # balanced class weights lifted the small `trash` class's F1 from 0.78 to 0.83 (benchmarks/RECIPES.md).
    "finetune": {**SEED, "fine_tune_epochs": 10, "fine_tune_at": 0, "fine_tune_learning_rate": 1e-4,
                 "fine_tune_schedule": "cosine", "class_weight": "balanced"},
}

ABOUT = {
    "seed": "the original recipe: only the head is trained, on a frozen ImageNet base (fastest)",
    "finetune": "the head first, then the whole base, at a learning rate decaying along a cosine "
                "(slower, and the most accurate measured)",
}

DEFAULT_RECIPE = "seed"
CLASS_WEIGHTS = ("none", "balanced")

# Defaults every recipe shares: where the base comes from and how the photos are held out.
SHARED: dict[str, Any] = {"weights": "imagenet", "val_split": 0.2, "seed": 1337}


def values_of(recipe: str) -> dict[str, Any]:
    """A recipe's values, by its name."""
    if recipe not in RECIPES:
        raise BinbotError(f"no recipe named {recipe!r}; the recipes are {', '.join(RECIPES)}")
    return RECIPES[recipe]


def resolve(recipe: str, given: dict[str, Any]) -> dict[str, Any]:
    """The recipe's name and values, each replaced by the value given for it (None: not given)."""
    values = values_of(recipe)
    unknown = set(given) - set(values)
    if unknown:
        raise ValueError(f"not set by a recipe: {', '.join(sorted(unknown))}")
    return {"recipe": recipe, **values, **{key: value for key, value in given.items() if value is not None}}


def changed(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings whose value is not their recipe's (say, options given on top of it)."""
    values = values_of(settings["recipe"])
    return {key: settings[key] for key in values if settings[key] != values[key]}


def as_flags(settings: dict[str, Any]) -> str:
    """Settings as the options that would give them: '--epochs 5 --fine-tune-at 0'."""
    return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in settings.items())


def summary(name: str) -> str:
    """What a recipe is, and the options that make it from the seed recipe."""
    if name == DEFAULT_RECIPE:
        return f"'{name}': {ABOUT[name]}"
    flags = as_flags(changed({**RECIPES[name], "recipe": DEFAULT_RECIPE}))
    return f"'{name}': the {DEFAULT_RECIPE} recipe with {flags}: {ABOUT[name]}"


def defaults_text(key: str) -> str:
    """'(default: 32 in every recipe)', or '(default: seed 0, finetune 10)' where the recipes differ."""
    values = {name: recipe[key] for name, recipe in RECIPES.items()}
    if len(set(values.values())) == 1:
        return f"(default: {values[DEFAULT_RECIPE]} in every recipe)"
    return "(default: " + ", ".join(f"{name} {value}" for name, value in values.items()) + ")"
