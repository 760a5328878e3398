"""`binbot train` and `binbot evaluate`. TensorFlow is imported only when one of them runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from binbot import quiet
from binbot.helpformat import DefaultsFormatter

DEFAULTS_NOTE = "Defaults are the seed recipe: frozen ImageNet base, Adam, batch 32, 10 epochs, with augmentation."


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train a classifier on a folder of photos (workstation)",
        description="Train MobileNetV2 + a dense head on DATA/<class>/<image> and write a run directory "
        "(model.keras, labels.txt, metrics.json, training.png, confusion.png, report.md). " + DEFAULTS_NOTE
        + " To retrain on frames from the field, give --data more than once (say --data photos --data field "
        "--init runs/current/model.keras): each folder is split on its own and its validation accuracy "
        "reported apart.",
        formatter_class=DefaultsFormatter,
    )
    train.add_argument("--data", type=Path, required=True, action="append",
                       help="folder with one sub-folder of images per class; repeat it to train on several "
                       "(a class may be missing from some; a field folder's unlabelled/ and discarded/ are not classes)")
    train.add_argument("--out", type=Path, required=True, help="run directory to create")
    train.add_argument("--val-data", type=Path, help="separate validation folder (instead of --val-split; "
                       "with one --data only)")
    train.add_argument("--val-split", type=float, default=0.2, help="share of each class held out for validation")
    train.add_argument(
        "--weights", default="imagenet", metavar="imagenet|none|PATH",
        help="base weights: 'imagenet' (Keras downloads them), 'none' (train everything from scratch), "
        "or a local MobileNetV2 no-top .h5 file",
    )
    train.add_argument("--init", type=Path, metavar="CHECKPOINT",
                       help="continue from a BinBot model.keras (its labels.txt must sit beside it)")
    train.add_argument("--image-size", type=int, default=224, help="square input size in pixels")
    train.add_argument("--batch-size", type=int, default=32, help="images per training step")
    train.add_argument("--epochs", type=int, default=10, help="epochs with the base frozen")
    train.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate for those epochs")
    train.add_argument("--augment", choices=["standard", "strong"], default="standard",
                       help="training-time image changes: 'standard' (mirror, small turns, zoom, light) or 'strong' "
                       "(flips both ways, any angle, more zoom and shift: items seen from above)")
    train.add_argument("--fine-tune-epochs", type=int, default=0,
                       help="then this many epochs with the top of the base unfrozen (0: no fine-tuning)")
    train.add_argument("--fine-tune-at", type=int, default=100,
                       help="first base layer to unfreeze when fine-tuning (MobileNetV2 has 154)")
    train.add_argument("--fine-tune-learning-rate", type=float, default=1e-5,
                       help="Adam learning rate while fine-tuning (at its start, with the cosine schedule)")
    train.add_argument("--fine-tune-schedule", choices=["constant", "cosine"], default="constant",
                       help="keep the fine-tuning learning rate, or let it decay along a cosine to 0")
    train.add_argument("--seed", type=int, default=1337, help="seed for the split, shuffling and augmentation")
    train.add_argument("--force", action="store_true", help="replace an existing --out")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="measure a checkpoint on a folder of photos",
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


def _train(args: argparse.Namespace) -> int:
    quiet.import_tensorflow()
    from binbot.train.trainer import TrainConfig, train

    weights = None if args.weights.lower() == "none" else args.weights
    config = TrainConfig(
        data=args.data, out=args.out, val_data=args.val_data, val_split=args.val_split, weights=weights,
        init=args.init, image_size=args.image_size, batch_size=args.batch_size, epochs=args.epochs,
        learning_rate=args.learning_rate, augment=args.augment, fine_tune_epochs=args.fine_tune_epochs, fine_tune_at=args.fine_tune_at,
        fine_tune_learning_rate=args.fine_tune_learning_rate, fine_tune_schedule=args.fine_tune_schedule,
        seed=args.seed, force=args.force,
    )
    train(config)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    quiet.import_tensorflow()
    from binbot.train.trainer import evaluate

    out = args.out or args.checkpoint.parent / f"evaluation-{args.data.resolve().name}"
    evaluate(args.checkpoint, args.data, out, args.labels, args.batch_size, args.force)
    return 0
