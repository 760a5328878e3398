"""The frame contract: every image file becomes RGB uint8, resized whole."""

import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image

from binbot.device.frames import RESIZE_POLICIES, load_model_input, read_rgb, resize_to_input
from binbot.errors import BinbotError

RED = (255, 0, 0)


@pytest.mark.parametrize("name", ["red.png", "red.jpg"])
def test_an_image_written_by_opencv_reads_back_as_rgb(tmp_path, name):
    path = tmp_path / name
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[:] = (0, 0, 255)  # OpenCV's order: this is red
    cv2.imwrite(str(path), bgr)
    assert np.abs(read_rgb(path)[8, 8].astype(int) - RED).max() <= 3  # JPEG is lossy: red, give or take


@pytest.mark.parametrize(
    "mode, colour, expected",
    [
        ("L", 90, (90, 90, 90)),  # greyscale is replicated
        ("RGBA", (255, 0, 0, 128), RED),  # alpha is dropped
        ("P", None, RED),  # palette images are expanded
        ("RGB", RED, RED),
    ],
)
def test_every_kind_of_png_becomes_three_channel_rgb(tmp_path, mode, colour, expected):
    if mode == "P":
        image = Image.new("RGB", (8, 6), RED).convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        image = Image.new(mode, (8, 6), colour)
    path = tmp_path / f"{mode}.png"
    image.save(path)
    rgb = read_rgb(path)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[3, 4]) == expected


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    with pytest.raises(BinbotError, match="notes.jpg: not a readable image"):
        read_rgb(path)


def test_whole_frame_is_resized_without_cropping():
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, :80] = 200  # left half bright: it must stay the left half after resizing
    small = resize_to_input(frame, 32, 32)
    assert small.shape == (32, 32, 3) and small.dtype == np.uint8
    assert small[:, :15].min() == 200 and small[:, 17:].max() == 0


def test_frame_already_at_input_size_is_passed_through_unchanged():
    frame = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert resize_to_input(frame, 32, 32) is frame


def test_upscaling_small_frames_works(tmp_path):
    path = tmp_path / "tiny.png"
    Image.new("RGB", (4, 3), RED).save(path)
    assert tuple(load_model_input(path, 16, 16)[8, 8]) == RED


def test_shrinking_averages_the_area_each_pixel_covers():
    row = np.array([0, 90, 180], np.uint8)  # 3 pixels to 2: each output covers 1.5 of them
    frame = np.repeat(np.repeat(row[None, :, None], 3, axis=2), 3, axis=0)
    assert resize_to_input(frame, 3, 2)[0, :, 0].tolist() == [30, 150]  # (0 + 45) / 1.5, (45 + 180) / 1.5


def test_a_mean_half_way_between_two_levels_rounds_up():
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[0] = 1
    assert resize_to_input(frame, 1, 1).tolist() == [[[1, 1, 1]]]


def pattern(height, width):
    """A frame every machine computes the same, with detail at every scale."""
    y, x, c = np.indices((height, width, 3))
    return ((y * 7 + x * 13 + c * 101) ** 2 % 251).astype(np.uint8)


@pytest.mark.parametrize("size, resized, sha256", [
    ((480, 640), (224, 224), "59b99e567a3282b1"),  # a USB camera's frame, shrunk
    ((30, 40), (96, 96), "cf9062ff7bdef0d7"),  # a thumbnail, enlarged
])
def test_the_resize_gives_the_same_pixels_on_every_cpu(size, resized, sha256):
    """Recorded on x86; ARM must match bit for bit, or training and the Pi see different images."""
    pixels = resize_to_input(pattern(*size), *resized, policy="stretch-area-exact")
    assert hashlib.sha256(pixels.tobytes()).hexdigest()[:16] == sha256


def test_the_exact_resize_is_within_one_level_of_opencvs_area_resize():
    frame = cv2.GaussianBlur(pattern(480, 640), (0, 0), 2)
    exact = resize_to_input(frame, 224, 224).astype(int)
    area = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(exact - area).max() <= 1


def test_older_bundles_resize_policy_is_opencvs_area_resize():
    frame = pattern(120, 160)
    assert set(RESIZE_POLICIES) == {"stretch-area-exact", "stretch-area"}
    np.testing.assert_array_equal(resize_to_input(frame, 32, 32, policy="stretch-area"),
                                  cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA))


def test_an_unknown_resize_policy_is_an_error():
    with pytest.raises(BinbotError, match="resize policy 'center-crop' is not one of stretch-area-exact, stretch-area"):
        resize_to_input(pattern(40, 40), 32, 32, policy="center-crop")
