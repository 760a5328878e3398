"""Classification figures from true and predicted labels."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows are true classes)."""
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (np.asarray(y_true), np.asarray(y_pred)), 1)
    correct = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(correct, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(correct, support, out=np.zeros(n), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(n), where=both > 0)
    total = int(confusion.sum())
    return {
        "accuracy": float(correct.sum() / total) if total else 0.0,
        "evaluated": total,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "macro_f1": float(f1[support > 0].mean()) if (support > 0).any() else 0.0,
        "confusion_matrix": confusion.tolist(),
        "labels": list(class_names),
    }


def format_table(metrics: dict) -> str:
    """A per-class table for the terminal and report.md."""
    rows = ["| class | precision | recall | F1 | images |", "|---|---:|---:|---:|---:|"]
    for name, m in metrics["per_class"].items():
        rows.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    rows.append(f"| **all** | | | macro {metrics['macro_f1']:.3f} | {metrics['evaluated']} |")
    return "\n".join(rows)
