"""The frame contract shared by training, calibration and the device.

A frame is an RGB uint8 array of shape (height, width, 3). The whole frame is
resized to the model's input size (no crop, aspect ratio not kept), and the model
itself does the normalisation, so nothing here does arithmetic on pixel values.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from binbot.errors import BinbotError

COLOR_ORDER = "RGB"
RESIZE_POLICY = "stretch-area"  # whole frame to input size; INTER_AREA shrinking, INTER_LINEAR enlarging
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 (greyscale, alpha and palette images included)."""
    # IMREAD_COLOR expands greyscale and palettes, drops alpha, reduces 16-bit to 8-bit
    # and applies the EXIF orientation, so every file arrives as 3-channel BGR.
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BinbotError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize_to_input(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a whole RGB frame to the model's input size, the one way BinBot resizes."""
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = rgb.shape[0] >= height and rgb.shape[1] >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interpolation)


def load_model_input(path: str | Path, height: int, width: int) -> np.ndarray:
    """An image file as the model sees it: RGB uint8, resized to (height, width)."""
    return resize_to_input(read_rgb(path), height, width)
