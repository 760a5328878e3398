"""A training run from a folder of photos to a run directory (binbot train; evaluation is train/evaluate.py)."""

from __future__ import annotations

import collections
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from binbot.convert import runfolder
from binbot.convert.checkpoint import load_checkpoint
from binbot.device.imagefolder import Example, scan
from binbot.device.labels import read_labels
from binbot.errors import BinbotError
from binbot.files import build_directory, check_can_write, check_out_apart
from binbot.train import plots, report
from binbot.train.folder import scan_all, stratified_split
from binbot.train.recipes import CLASS_WEIGHTS, DEFAULT_RECIPE, SEED, SHARED, values_of
from binbot.train.scores import classification_metrics, format_table
from binbot.train.model import build_model, freeze_base, unfreeze_top
from binbot.train.pipeline import make_dataset


@dataclass
class TrainConfig:
    """Everything that decides a run; saved as the run folder's config.json beside the checkpoint.

    The defaults are the seed recipe's; recipes.resolve() gives another recipe's values.
    """

    data: list[Path] | Path  # one --data folder or several; always a list once made
    out: Path
    recipe: str = DEFAULT_RECIPE  # the name only: the values below are what the run uses
    val_data: Path | None = None
    val_split: float = SHARED["val_split"]
    weights: str | None = SHARED["weights"]
    init: Path | None = None
    image_size: int = SEED["image_size"]
    batch_size: int = SEED["batch_size"]
    epochs: int = SEED["epochs"]
    learning_rate: float = SEED["learning_rate"]
    augment: str = SEED["augment"]
    fine_tune_epochs: int = SEED["fine_tune_epochs"]
    fine_tune_at: int = SEED["fine_tune_at"]
    fine_tune_learning_rate: float = SEED["fine_tune_learning_rate"]
    fine_tune_schedule: str = SEED["fine_tune_schedule"]
    class_weight: str = SEED["class_weight"]
    seed: int = SHARED["seed"]
    force: bool = False

    def __post_init__(self) -> None:
        self.data = [Path(self.data)] if isinstance(self.data, (str, Path)) else [Path(p) for p in self.data]
        values_of(self.recipe)  # refuses an unknown recipe name now, not after training
        if self.class_weight not in CLASS_WEIGHTS:
            raise BinbotError(f"--class-weight must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weight!r}")

    def as_json(self) -> dict:
        def plain(value):
            if isinstance(value, list):
                return [plain(v) for v in value]
            return str(value) if isinstance(value, Path) else value

        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}


@dataclass
class DataPart:
    """One --data folder's share of a run: its name in reports, and its training and validation images."""

    name: str
    path: Path
    train: list[Example]
    val: list[Example]
    skipped: list[tuple[Path, str]]


def split_data(config: TrainConfig) -> tuple[list[str], list[DataPart]]:
    """The classes, and each --data folder's training and validation images.

    Each folder is split on its own, with the same seed, so a folder's validation images are the
    same whether it is trained alone or beside others, and its accuracy can be compared run to run.
    """
    if config.val_data and len(config.data) > 1:
        raise BinbotError(f"--val-data {config.val_data}: works with one --data, not {len(config.data)}; "
                          "drop it and each --data folder is split by --val-split")
    known_labels = read_labels(runfolder.labels_beside(config.init)) if config.init else None
    scanned = scan_all(config.data, known_labels)
    class_names = scanned[0].class_names
    names = data_names(config.data)
    if config.val_data:
        val_images = scan(config.val_data, class_names)
        return class_names, [DataPart(names[0], config.data[0], scanned[0].examples, val_images.examples,
                                      scanned[0].skipped + val_images.skipped)]
    parts = []
    for name, path, images in zip(names, config.data, scanned):
        train_examples, val_examples = stratified_split(images.examples, config.val_split, config.seed)
        parts.append(DataPart(name, path, train_examples, val_examples, images.skipped))
    return class_names, parts


def data_names(paths: list[Path]) -> list[str]:
    """Short names for --data folders in reports: each folder's name, with as many parent folders as tell it apart."""
    all_parts = [p.resolve().parts for p in paths]
    names = []
    for parts in all_parts:
        depth = 1
        while any(other != parts and other[-depth:] == parts[-depth:] for other in all_parts):
            depth += 1
        names.append(str(Path(*parts[-depth:])))
    return names


def train(config: TrainConfig) -> dict:
    """Train, evaluate on the validation images and write the run directory; returns its metrics."""
    for data in config.data:
        check_out_apart(config.out, {"--data": data})
    check_out_apart(config.out, {"--val-data": config.val_data, "--init": config.init})
    check_can_write(config.out, config.force)
    if config.epochs < 0 or config.fine_tune_epochs < 0 or config.epochs + config.fine_tune_epochs == 0:
        raise BinbotError("nothing to train: --epochs and --fine-tune-epochs add up to 0")
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)

    class_names, parts = split_data(config)
    train_examples = [e for part in parts for e in part.train]
    val_examples = [e for part in parts for e in part.val]
    skipped = [s for part in parts for s in part.skipped]
    print(
        f"{len(class_names)} classes ({', '.join(class_names)}): {len(train_examples)} training and "
        f"{len(val_examples)} validation images, {len(skipped)} file(s) skipped"
    )
    if len(parts) > 1:
        print("  " + "; ".join(f"{p.name}: {len(p.train)} training, {len(p.val)} validation" for p in parts))

    class_weight = balanced_class_weights(train_examples) if config.class_weight == "balanced" else None
    if class_weight:
        print("class weights (balanced): " + ", ".join(f"{class_names[c]} {w:.2f}" for c, w in class_weight.items()))

    model = _starting_model(config, len(class_names))
    train_ds = make_dataset(train_examples, config.image_size, config.batch_size, training=True,
                            augment=config.augment, seed=config.seed)
    val_ds = make_dataset(val_examples, config.image_size, config.batch_size)

    history: dict[str, list[float]] = {}
    fit_started = time.monotonic()
    if config.epochs:
        print(f"phase 1: {config.epochs} epoch(s) at learning rate {config.learning_rate}")
        _fit(model, train_ds, val_ds, config.learning_rate, 0, config.epochs, history, class_weight)
    if config.fine_tune_epochs:
        n_trainable = unfreeze_top(model, config.fine_tune_at)
        print(
            f"phase 2: fine-tuning {n_trainable} base layers from layer {config.fine_tune_at} on "
            f"(batch norm kept frozen) for {config.fine_tune_epochs} epoch(s) at {config.fine_tune_learning_rate}"
            + (", decaying along a cosine to 0" if config.fine_tune_schedule == "cosine" else "")
        )
        learning_rate = _fine_tune_learning_rate(config, len(train_examples))
        _fit(model, train_ds, val_ds, learning_rate, config.epochs, config.epochs + config.fine_tune_epochs, history,
             class_weight)
    fit_seconds = time.monotonic() - fit_started

    predicted = predict(model, val_ds)
    metrics = classification_metrics(labels_of(val_examples), predicted, class_names)
    metrics.update(
        images={"train": len(train_examples), "validation": len(val_examples), "skipped": len(skipped)},
        skipped_files=[{"path": str(p), "reason": why} for p, why in skipped],
        training_seconds=round(fit_seconds, 1),
        total_seconds=round(time.monotonic() - started, 1),
    )
    if class_weight:
        metrics["class_weights"] = {class_names[c]: w for c, w in class_weight.items()}
    if len(parts) > 1:
        metrics["by_data"] = _by_data(parts, predicted, class_names)
    _write_run(config, model, runfolder.Split(class_names, train_examples, val_examples), history, metrics)
    print(format_table(metrics))
    print(f"validation accuracy {metrics['accuracy']:.4f} after {fit_seconds / 60:.1f} min of training")
    for name, part in metrics.get("by_data", {}).items():
        print(f"  {name}: {report.accuracy_text(part)}")
    print(f"wrote {config.out}/: {', '.join(runfolder.FILES)}")
    return metrics


def balanced_class_weights(train_examples: list[Example]) -> dict[int, float]:
    """n / (k * count) for each class label among the training images (k: how many classes they hold).

    Each class then weighs as much in the loss as any other, and an image weighs 1 on average, so the
    learning rates keep their meaning. A class without training images gets no weight: it never occurs.
    """
    counts = collections.Counter(e.label for e in train_examples)
    n, k = len(train_examples), len(counts)
    return {label: n / (k * counts[label]) for label in sorted(counts)}


def _starting_model(config: TrainConfig, n_classes: int) -> keras.Model:
    if config.init:
        model = load_checkpoint(config.init)
        if model.output_shape[-1] != n_classes:
            raise BinbotError(f"{config.init}: outputs {model.output_shape[-1]} classes but its {runfolder.LABELS} lists {n_classes}")
        if model.input_shape[1:3] != (config.image_size, config.image_size):
            raise BinbotError(f"{config.init}: takes {model.input_shape[1:3]} images; pass --image-size to match")
        freeze_base(model)
        print(f"starting from {config.init} (its base frozen for phase 1; --weights is not used)")
        return model
    model = build_model(n_classes, config.weights, config.image_size)
    if config.weights is None:
        print("--weights none: the base has no pretrained weights, so the whole model is trained, batch norm included")
    return model


def _fine_tune_learning_rate(config: TrainConfig, n_train: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    if config.fine_tune_schedule == "constant":
        return config.fine_tune_learning_rate
    if config.fine_tune_schedule == "cosine":
        steps = math.ceil(n_train / config.batch_size) * config.fine_tune_epochs
        return keras.optimizers.schedules.CosineDecay(config.fine_tune_learning_rate, decay_steps=steps)
    raise BinbotError(f"--fine-tune-schedule must be constant or cosine, got {config.fine_tune_schedule!r}")


def _fit(model, train_ds, val_ds, learning_rate, first_epoch: int, last_epoch: int, history: dict,
         class_weight: dict[int, float] | None = None) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    result = model.fit(
        train_ds,
        validation_data=val_ds,
        initial_epoch=first_epoch,
        epochs=last_epoch,
        class_weight=class_weight,
        shuffle=False,  # the dataset shuffles itself
        verbose=1 if sys.stdout.isatty() else 2,
    )
    for key, values in result.history.items():
        history.setdefault(key, []).extend(float(v) for v in values)


def predict(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """The predicted class of every image, in the dataset's order."""
    return model.predict(dataset, verbose=0).argmax(axis=1)


def labels_of(examples: list[Example]) -> np.ndarray:
    return np.array([e.label for e in examples], dtype=np.int64)


def _by_data(parts: list[DataPart], predicted: np.ndarray, class_names: list[str]) -> dict:
    """The validation figures of each --data folder, from its slice of the predictions (which follow the parts' order)."""
    by_data, start = {}, 0
    for part in parts:
        end = start + len(part.val)
        figures = classification_metrics(labels_of(part.val), predicted[start:end], class_names)
        if not part.val:  # a folder too small to hold any image out has no accuracy, rather than 0
            figures.update(accuracy=None, macro_f1=None)
        by_data[part.name] = {
            "data": str(part.path), **figures,
            "images": {"train": len(part.train), "validation": len(part.val), "skipped": len(part.skipped)},
        }
        start = end
    return by_data


def _write_run(config: TrainConfig, model: keras.Model, split: runfolder.Split, history: dict, metrics: dict) -> None:
    fine_tune_from = config.epochs if config.fine_tune_epochs else None
    with build_directory(config.out, config.force) as run:
        runfolder.write(run, model, split, config.as_json(), {**history, "fine_tune_from_epoch": fine_tune_from}, metrics)
        plots.plot_history(history, run / runfolder.TRAINING_PLOT, fine_tune_from)
        plots.plot_confusion(metrics["confusion_matrix"], split.class_names, run / runfolder.CONFUSION_PLOT,
                             "Validation confusion matrix")
        (run / runfolder.REPORT).write_text(report.training_report(config.as_json(), metrics))
