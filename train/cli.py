"""`binbot train` and `binbot evaluate`. TensorFlow is imported only when one of them runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from binbot import quiet
from binbot.helpformat import DefaultsFormatter, epilog
from binbot.convert import runfolder
from binbot.train import recipes

RECIPES_NOTE = (
    "A recipe gives every hyper-parameter a value (--recipe; each option below shows its default in each recipe), "
    "and any option given replaces the recipe's value; config.json in the run records the recipe and every value used."
)
TRAIN_EPILOG = epilog(
    ("binbot train --data photos --out runs/first", "the seed recipe; Keras downloads the ImageNet weights once"),
    ("binbot train --data photos --out runs/best --recipe finetune", "slower, more accurate"),
    ("binbot train --data photos --out runs/first --weights ~/mobilenet_v2_no_top.h5", "offline: a local weights file"),
    ("binbot train --data photos --data field --init runs/first/model.keras --out runs/next",
     "retrain on the Pi's labelled field frames beside the photos"),
    next_steps="`binbot convert RUN/model.keras --out BUNDLE` makes a bundle for the Pi; "
    "`binbot evaluate RUN/model.keras --data FOLDER` measures the model on other photos.",
)
EVALUATE_EPILOG = epilog(
    ("binbot evaluate runs/first/model.keras --data more-photos", "writes runs/first/evaluation-more-photos/"),
    next_steps="`binbot convert CHECKPOINT --out BUNDLE` makes a bundle for the Pi.",
)


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train a classifier on a folder of photos (workstation)",
        epilog=TRAIN_EPILOG,
        description="Train MobileNetV2 + a dense head on DATA/<class>/<image> and write a run directory "
        f"({', '.join(runfolder.FILES)}). " + RECIPES_NOTE
        + " To retrain on frames from the field, give --data more than once (say --data photos --data field "
        "--init runs/current/model.keras): each folder is split on its own and its validation accuracy "
        "reported apart.",
        formatter_class=DefaultsFormatter,
    )
    data = train.add_argument_group("photos")
    data.add_argument("--data", type=Path, required=True, action="append",
                      help="folder with one sub-folder of images per class; repeat it to train on several "
                      "(a class may be missing from some; a field folder's unlabelled/ and discarded/ are not classes)")
    data.add_argument("--val-data", type=Path, help="separate validation folder (instead of --val-split; "
                      "with one --data only)")
    data.add_argument("--val-split", type=float, default=recipes.SHARED["val_split"],
                      help="share of each class held out for validation")
    data.add_argument("--seed", type=int, default=recipes.SHARED["seed"],
                      help="seed for the split, shuffling and augmentation")
    train.add_argument("--out", type=Path, required=True, help="run directory to create")
    train.add_argument("--force", action="store_true", help="replace an existing --out")
    train.add_argument("--recipe", choices=list(recipes.RECIPES), default=recipes.DEFAULT_RECIPE,
                       help="; ".join(map(recipes.summary, recipes.RECIPES)))
    train.add_argument(
        "--weights", default=recipes.SHARED["weights"], metavar="imagenet|none|PATH",
        help="base weights: 'imagenet' (Keras downloads them), 'none' (train everything from scratch), "
        "or a local MobileNetV2 no-top .h5 file",
    )
    train.add_argument("--init", type=Path, metavar="CHECKPOINT",
                       help="continue from a BinBot model.keras (its labels.txt must sit beside it)")

    recipe = train.add_argument_group("the recipe's values (an option given replaces the --recipe's)")
    _recipe_option(recipe, "--image-size", "square input size in pixels", type=int)
    _recipe_option(recipe, "--batch-size", "images per training step", type=int)
    _recipe_option(recipe, "--epochs", "epochs with the base frozen", type=int)
    _recipe_option(recipe, "--learning-rate", "Adam learning rate for those epochs", type=float)
    _recipe_option(recipe, "--augment", "training-time image changes: 'standard' (mirror, small turns, zoom, light) "
                    "or 'strong' (flips both ways, any angle, more zoom and shift: items seen from above)",
                    choices=["standard", "strong"])
    _recipe_option(recipe, "--fine-tune-epochs", "then this many epochs with the base unfrozen from --fine-tune-at on "
                    "(0: no fine-tuning)", type=int)
    _recipe_option(recipe, "--fine-tune-at", "first base layer to unfreeze when fine-tuning (MobileNetV2 has 154)",
                    type=int)
    _recipe_option(recipe, "--fine-tune-learning-rate", "Adam learning rate while fine-tuning (at its start, with the "
                    "cosine schedule)", type=float)
    _recipe_option(recipe, "--fine-tune-schedule", "keep the fine-tuning learning rate, or let it decay along a cosine "
                    "to 0", choices=["constant", "cosine"])
    _recipe_option(recipe, "--class-weight", "'balanced' weighs each class in the loss by n / (classes x its count), "
                    "counted on the training images, so a class with few photos counts as much as the others; "
                    "'none' weighs every image the same", choices=list(recipes.CLASS_WEIGHTS))
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="measure a checkpoint on a folder of photos (workstation)",
        epilog=EVALUATE_EPILOG,
        description="Print and write accuracy, per-class precision/recall/F1 and the confusion matrix "
        "of CHECKPOINT on DATA/<class>/<image>.",
        formatter_class=DefaultsFormatter,
    )
    evaluate.add_argument("checkpoint", type=Path, help="a model.keras (or .h5) from binbot train")
    evaluate.add_argument("--data", type=Path, required=True, help="folder with one sub-folder of images per class")
    evaluate.add_argument("--labels", type=Path, help="labels file (default: labels.txt beside the checkpoint)")
    evaluate.add_argument("--out", type=Path, help="folder for metrics.json, confusion.png, report.md "
                          "(default: evaluation-<data folder name> beside the checkpoint)")
    evaluate.add_argument("--batch-size", type=int, default=32, help="images per prediction step")
    evaluate.add_argument("--force", action="store_true", help="replace an existing --out")
    evaluate.set_defaults(handler=_evaluate)


def _recipe_option(parser: argparse._ActionsContainer, flag: str, text: str, **options) -> None:
    """An option a recipe sets. It has no argparse default, so an option given can be told from one left out."""
    key = flag.removeprefix("--").replace("-", "_")
    parser.add_argument(flag, default=None, help=f"{text} {recipes.defaults_text(key)}", **options)


def train_settings(args: argparse.Namespace) -> dict:
    """TrainConfig's arguments: the recipe's values, replaced by the options given."""
    given = {key: getattr(args, key) for key in recipes.RECIPES[args.recipe]}
    return {
        **recipes.resolve(args.recipe, given),
        "data": args.data, "out": args.out, "val_data": args.val_data, "val_split": args.val_split,
        "weights": None if args.weights.lower() == "none" else args.weights, "init": args.init,
        "seed": args.seed, "force": args.force,
    }


def _train(args: argparse.Namespace) -> int:
    quiet.import_tensorflow()
    from binbot.train.trainer import TrainConfig, train

    train(TrainConfig(**train_settings(args)))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    quiet.import_tensorflow()
    from binbot.train.evaluate import evaluate

    out = args.out or args.checkpoint.parent / f"evaluation-{args.data.resolve().name}"
    evaluate(args.checkpoint, args.data, out, args.labels, args.batch_size, args.force)
    return 0
