"""report.md: the figures and pictures of a run or an evaluation, tied together for a person."""

from __future__ import annotations

from datetime import datetime, timezone

from binbot.convert.runfolder import CONFIG, CONFUSION_PLOT, HISTORY, LABELS, METRICS, MODEL, TRAINING_PLOT
from binbot.train import recipes
from binbot.train.scores import format_table

SKIPPED_SHOWN = 20


def training_report(config: dict, metrics: dict) -> str:
    images = metrics["images"]
    phases = f"{config['epochs']} epoch(s) with the base frozen"
    if config["fine_tune_epochs"]:
        phases += (f", then {config['fine_tune_epochs']} fine-tuning the base from layer "
                   f"{config['fine_tune_at']} at learning rate {config['fine_tune_learning_rate']}"
                   + (" decaying along a cosine" if config["fine_tune_schedule"] == "cosine" else ""))
    start = f"checkpoint `{config['init']}`" if config["init"] else f"weights `{config['weights']}`"
    data = ", ".join(f"`{path}`" for path in config["data"])
    return "\n".join([
        "# BinBot training run",
        "",
        f"Made {_now()} from {data} with {_recipe_text(config)}, starting from {start}: {phases}.",
        *_class_weights_text(metrics.get("class_weights")),
        "",
        f"**Validation accuracy: {metrics['accuracy']:.2%}** on {images['validation']} images "
        f"(macro F1 {metrics['macro_f1']:.3f}); trained on {images['train']} images in "
        f"{metrics['training_seconds'] / 60:.1f} min; {images['skipped']} file(s) skipped.",
        "",
        *_by_data_table(metrics.get("by_data", {})),
        f"![Loss and accuracy per epoch]({TRAINING_PLOT})",
        "",
        "## Per class, on the validation images",
        "",
        format_table(metrics),
        "",
        f"![Confusion matrix]({CONFUSION_PLOT})",
        "",
        *_by_data_classes(metrics.get("by_data", {})),
        *_skipped_section(metrics["skipped_files"]),
        "## Files",
        "",
        f"- `{MODEL}`: the checkpoint (input raw RGB 0..255, output class probabilities)",
        f"- `{LABELS}`: class names in output order",
        f"- `{METRICS}`, `{HISTORY}`, `{CONFIG}`: the figures above, per-epoch history, every setting",
        "",
    ])


def evaluation_report(metrics: dict) -> str:
    return "\n".join([
        "# BinBot evaluation",
        "",
        f"Made {_now()}: `{metrics['checkpoint']}` on `{metrics['data']}`.",
        "",
        f"**Accuracy: {metrics['accuracy']:.2%}** on {metrics['evaluated']} images (macro F1 {metrics['macro_f1']:.3f}).",
        "",
        format_table(metrics),
        "",
        f"![Confusion matrix]({CONFUSION_PLOT})",
        "",
        *_skipped_section(metrics["skipped_files"]),
    ])


def accuracy_text(figures: dict) -> str:
    """'accuracy 0.8750 on 8 images (macro F1 0.857)', or why there is none."""
    if figures["accuracy"] is None:
        return "no validation images (too few to hold any out)"
    return f"accuracy {figures['accuracy']:.4f} on {figures['evaluated']} images (macro F1 {figures['macro_f1']:.3f})"


def _recipe_text(config: dict) -> str:
    """'the `finetune` recipe', and the options given on top of it."""
    changed = recipes.changed(config)
    return f"the `{config['recipe']}` recipe" + (f" (and, over it, `{recipes.as_flags(changed)}`)" if changed else "")


def _class_weights_text(weights: dict | None) -> list[str]:
    if not weights:
        return []
    shown = ", ".join(f"{name} {weight:.2f}" for name, weight in weights.items())
    return ["", f"Classes weighted for balance (n / (classes x count), on the training images): {shown}."]


def _by_data_table(by_data: dict) -> list[str]:
    """Each --data folder's share of the validation images and how the model did on it."""
    if not by_data:
        return []
    lines = ["## Per data folder, on its own validation images", "",
             "| data folder | training images | validation images | accuracy | macro F1 |", "|---|---:|---:|---:|---:|"]
    for name, part in by_data.items():
        accuracy, macro_f1 = ("n/a", "n/a") if part["accuracy"] is None else (f"{part['accuracy']:.2%}", f"{part['macro_f1']:.3f}")
        where = name if part["data"] == name else f"{name} (`{part['data']}`)"
        lines.append(f"| {where} | {part['images']['train']} | {part['evaluated']} | {accuracy} | {macro_f1} |")
    return lines + [""]


def _by_data_classes(by_data: dict) -> list[str]:
    lines = []
    for name, part in by_data.items():
        if part["accuracy"] is not None:
            lines += [f"## Per class, on the validation images of {name}", "", format_table(part), ""]
    return lines


def _skipped_section(skipped: list[dict]) -> list[str]:
    if not skipped:
        return []
    lines = ["## Skipped files", ""]
    lines += [f"- `{s['path']}`: {s['reason']}" for s in skipped[:SKIPPED_SHOWN]]
    if len(skipped) > SKIPPED_SHOWN:
        lines.append(f"- ... and {len(skipped) - SKIPPED_SHOWN} more (all are in {METRICS})")
    return lines + [""]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
