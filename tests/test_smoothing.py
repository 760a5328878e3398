"""Smoothing: per-frame scores become one event per stable change of the item in view."""

import numpy as np

from binbot.device.smoothing import Smoother

BOTTLE, CAN = np.array([0.9, 0.1]), np.array([0.2, 0.8])
UNSURE = np.array([0.5, 0.5])


def events(smoother, frames):
    return [(d.label, round(d.confidence, 3)) if d else None for d in map(smoother.update, frames)]


def test_an_item_held_in_view_is_one_event_after_the_window_fills():
    assert events(Smoother(3, 0.6), [BOTTLE] * 6) == [None, None, (0, 0.9), None, None, None]


def test_a_single_odd_frame_does_not_make_an_event():
    assert events(Smoother(3, 0.6), [BOTTLE] * 3 + [CAN] + [BOTTLE] * 3)[3:] == [None] * 4


def test_a_change_of_item_is_an_event_once_it_dominates_the_window():
    result = events(Smoother(3, 0.6), [BOTTLE] * 3 + [CAN] * 3)
    assert result[2] == (0, 0.9)
    assert result[3:] == [None, None, (1, 0.8)]  # can's mean is 0.567 < 0.6 until the window is all can


def test_below_the_threshold_the_view_is_empty_and_the_same_item_again_is_a_new_event():
    smoother = Smoother(2, 0.75)
    result = events(smoother, [BOTTLE, BOTTLE, UNSURE, UNSURE, BOTTLE, BOTTLE])
    assert result == [None, (0, 0.9), None, None, None, (0, 0.9)]


def test_reset_forgets_the_window():
    smoother = Smoother(2, 0.6)
    events(smoother, [BOTTLE, BOTTLE])
    smoother.reset()
    assert events(smoother, [BOTTLE, BOTTLE]) == [None, (0, 0.9)]


def test_top_k_breaks_ties_as_argmax_does_so_label_and_top_agree():
    from binbot.device.frame_step import frame_result, top_k

    scores = np.array([0.0, 0.5, 0.0, 0.5], np.float32)  # an int8 model often ties like this
    top = top_k(scores, ["a", "b", "c", "d"], 3)
    assert [t["label"] for t in top] == ["b", "d", "a"]
    result, _ = frame_result(scores, ["a", "b", "c", "d"], 3)
    assert result["label"] == result["top"][0]["label"] == "b"
