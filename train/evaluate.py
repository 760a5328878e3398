"""`binbot evaluate`: a checkpoint's figures on a <class>/<image> folder, printed and written like a run's."""

from __future__ import annotations

from pathlib import Path

from binbot.convert import runfolder
from binbot.convert.checkpoint import load_checkpoint
from binbot.device.imagefolder import scan
from binbot.device.labels import read_labels
from binbot.errors import BinbotError
from binbot.files import build_directory, check_can_write, check_out_apart, write_json
from binbot.train import plots, report
from binbot.train.pipeline import make_dataset
from binbot.train.scores import classification_metrics, format_table
from binbot.train.trainer import labels_of, predict


def evaluate(checkpoint: Path, data: Path, out: Path, labels: Path | None = None,
             batch_size: int = 32, force: bool = False) -> dict:
    """Metrics of a checkpoint on a <class>/<image> folder, printed and written to out."""
    check_out_apart(out, {"--data": data, "the checkpoint": checkpoint})
    check_can_write(out, force)
    model = load_checkpoint(checkpoint)
    class_names = read_labels(labels or runfolder.labels_beside(checkpoint))
    if model.output_shape[-1] != len(class_names):
        raise BinbotError(f"{checkpoint}: outputs {model.output_shape[-1]} classes but the labels list {len(class_names)}")
    images = scan(data, class_names)
    image_size = model.input_shape[1]
    dataset = make_dataset(images.examples, image_size, batch_size)
    metrics = classification_metrics(labels_of(images.examples), predict(model, dataset), class_names)
    metrics.update(
        images={"evaluated": len(images.examples), "skipped": len(images.skipped)},
        checkpoint=str(checkpoint),
        data=str(data),
        skipped_files=[{"path": str(p), "reason": why} for p, why in images.skipped],
    )
    # An evaluation folder holds the run folder's figures for other images: its files go by the same names.
    written = (runfolder.METRICS, runfolder.CONFUSION_PLOT, runfolder.REPORT)
    with build_directory(out, force) as result:
        write_json(result / runfolder.METRICS, metrics)
        plots.plot_confusion(metrics["confusion_matrix"], class_names, result / runfolder.CONFUSION_PLOT,
                             f"Confusion matrix on {data}")
        (result / runfolder.REPORT).write_text(report.evaluation_report(metrics))
    print(format_table(metrics))
    print(f"accuracy {metrics['accuracy']:.4f} on {metrics['evaluated']} images ({len(images.skipped)} skipped)")
    print(f"wrote {out}/: {', '.join(written)}")
    return metrics
