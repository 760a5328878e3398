"""Per-class figures against values worked out by hand."""

import numpy as np
import pytest

from binbot.train.scores import classification_metrics, format_table


def test_figures_match_a_hand_worked_confusion_matrix():
    # true:      a a a a b b c
    # predicted: a a b c b b b
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 2, 1, 1, 1])

    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])

    assert m["confusion_matrix"] == [[2, 1, 1], [0, 2, 0], [0, 1, 0]]
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 4})
    assert m["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["evaluated"] == 7


def test_classes_absent_from_the_data_do_not_drag_macro_f1_down():
    m = classification_metrics(np.array([0, 1]), np.array([0, 1]), ["a", "b", "unused"])
    assert m["macro_f1"] == 1.0
    assert m["per_class"]["unused"]["support"] == 0


def test_table_has_a_row_per_class():
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["glass", "metal"])
    table = format_table(m)
    assert "| glass | 0.500 | 1.000 | 0.667 | 1 |" in table
    assert "| metal | 1.000 | 0.500 | 0.667 | 2 |" in table
