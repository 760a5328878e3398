"""The [motion] gate on generated frames: a still scene idles, slow light is not motion, a moving thing is, a
hand that passes leaves the scene empty again, an item left lying is not empty, and the empty scene can be
learned again."""

import numpy as np
import pytest

from binbot.device.gate import Gate, MotionSettings
from binbot.errors import BinbotError
from binbot.schema import read

FPS = 10.0
HEIGHT, WIDTH = 240, 320


class Camera:
    """Frames of a generated bin at FPS, with sensor noise, through a Gate whose clock is the frames'."""

    def __init__(self, settings=MotionSettings(), seed=0):
        self.rng = np.random.default_rng(seed)
        self.now = 0.0
        self.gate = Gate(settings, clock=lambda: self.now)
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
        # A bin's floor: a gradient and some texture, so that the median is not the whole picture.
        self.floor = (90 + 40 * xx / WIDTH + 15 * np.sin(yy / 7.0) * np.cos(xx / 11.0)).astype(np.float32)

    def frame(self, light=1.0, items=()):
        """One frame: the floor under light (a gain), and items as (row, column, size, grey level) squares."""
        picture = self.floor * light
        for row, column, size, level in items:
            picture[row:row + size, column:column + size] = level * light
        picture = picture + self.rng.normal(0, 2.0, picture.shape)  # sensor noise
        grey = np.clip(picture, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)

    def show(self, seconds, **frame):
        """Show frames for seconds; the looks, one a frame."""
        looks = []
        for _ in range(round(seconds * FPS)):
            looks.append(self.gate.look(self.frame(**frame)))
            self.now += 1 / FPS
        return looks


def test_a_still_scene_is_empty_and_classified_at_the_idle_rate():
    camera = Camera()

    looks = camera.show(30)

    later = looks[round(5 * FPS):]  # once settled
    assert all(look.scene == "empty" for look in later)
    assert sum(look.classify for look in later) == pytest.approx(25, abs=1)  # idle_fps 1, not 10


def test_a_slow_drift_of_the_light_never_shows_motion():
    camera = Camera()
    camera.show(5)

    looks = []
    for step in range(600):  # the light rises by half over a minute, as a cloud passes or the day goes on
        looks += camera.show(0.1, light=1.0 + 0.5 * step / 600)

    assert all(look.scene == "empty" for look in looks)
    assert max(look.changed for look in looks) < MotionSettings().min_area


def test_a_light_switched_on_is_not_a_thing_in_the_bin():
    camera = Camera()
    camera.show(5)

    looks = camera.show(5, light=1.6)

    assert [look.scene for look in looks[-30:]] == ["empty"] * 30


def test_a_moving_thing_is_motion_and_every_frame_of_it_is_classified():
    camera = Camera()
    camera.show(5)

    looks = []
    for step in range(30):  # a can sliding across the bin, 8 px a frame
        looks += camera.show(0.1, items=[(100, 20 + 8 * step, 40, 220)])

    assert all(look.scene == "moving" and look.classify for look in looks)


def test_a_hand_that_passes_through_leaves_the_scene_empty_again():
    camera = Camera()
    camera.show(5)

    passing = []
    for step in range(15):
        passing += camera.show(0.1, items=[(60, 10 + 20 * step, 70, 40)])  # a dark hand, in and out
    after = camera.show(MotionSettings().settle + 1)

    assert "moving" in {look.scene for look in passing}
    assert after[-1].scene == "empty" and not any(look.scene == "still" for look in after)


def test_an_item_left_lying_is_still_not_empty_and_learning_again_makes_it_empty():
    camera = Camera()
    camera.show(5)
    can = [(100, 150, 50, 230)]

    lying = camera.show(10, items=can)
    assert lying[0].scene == "moving" and lying[-1].scene == "still"
    assert lying[-1].unlike_empty > MotionSettings().empty_area
    assert sum(look.classify for look in lying[-30:]) == pytest.approx(3, abs=1)  # still: the idle rate

    camera.gate.learn_background()  # the can is part of the bin now (say, a sticker on its floor)
    relearned = camera.show(2, items=can)

    assert relearned[-1].scene == "empty"


def test_without_the_empty_scene_a_still_scene_is_only_still():
    camera = Camera(MotionSettings(empty=False))

    looks = camera.show(10)

    assert {look.scene for look in looks[round(5 * FPS):]} == {"still"}


@pytest.mark.parametrize("table, problem", [
    ({"threshold": 0}, "[motion] threshold = 0: must be between 1 and 254"),
    ({"idle_fps": 0}, "[motion] idle_fps = 0.0: must be above 0 and at most 30"),
    ({"min_area": 0.02, "empty_area": 0.01}, "[motion] empty_area = 0.01: must not be below min_area (0.02)"),
    ({"setle": 2}, "[motion] unknown key 'setle'"),
])
def test_bad_motion_settings_are_one_line_naming_the_key(table, problem):
    with pytest.raises(BinbotError) as refused:
        read(MotionSettings, table, "binbot.toml", "motion")

    assert str(refused.value).startswith(f"binbot.toml: {problem}")
