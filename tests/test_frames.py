"""The frame contract: every image file becomes RGB uint8, resized whole."""

import cv2
import numpy as np
import pytest
from PIL import Image

from binbot.device.frames import load_model_input, read_rgb, resize_to_input
from binbot.errors import BinbotError

RED = (255, 0, 0)


def test_jpeg_written_by_opencv_reads_back_as_rgb(tmp_path):
    path = tmp_path / "red.png"
    bgr = np.zeros((10, 12, 3), np.uint8)
    bgr[:] = (0, 0, 255)  # OpenCV's order: this is red
    cv2.imwrite(str(path), bgr)
    assert tuple(read_rgb(path)[0, 0]) == RED


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
