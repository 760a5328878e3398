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
# How frames are resized, as bundle.json records it. Every policy stretches the whole frame to the
# input size. "stretch-area-exact", what BinBot writes, gives the same pixels on every CPU: shrinking
# is an area average in integer arithmetic, enlarging OpenCV's bit-exact bilinear. "stretch-area",
# what older bundles say, is OpenCV's INTER_AREA / INTER_LINEAR, whose SIMD code rounds differently
# on ARM than on x86; the device still serves those bundles with it.
RESIZE_POLICY = "stretch-area-exact"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 (greyscale, alpha and palette images included)."""
    # IMREAD_COLOR expands greyscale and palettes, drops alpha, reduces 16-bit to 8-bit
    # and applies the EXIF orientation, so every file arrives as 3-channel BGR.
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BinbotError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize_to_input(rgb: np.ndarray, height: int, width: int, policy: str = RESIZE_POLICY) -> np.ndarray:
    """Resize a whole RGB frame to the model's input size, the way a bundle's resize policy says."""
    if rgb.shape[:2] == (height, width):
        return rgb
    try:
        resize = RESIZE_POLICIES[policy]
    except KeyError:
        raise BinbotError(f"resize policy {policy!r} is not one of {', '.join(RESIZE_POLICIES)}") from None
    return resize(rgb, height, width)


def _stretch_area(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    shrinking = rgb.shape[0] >= height and rgb.shape[1] >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interpolation)


def _stretch_area_exact(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    if rgb.shape[0] < height or rgb.shape[1] < width:
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR_EXACT)
    # Rows first; then the sums transposed, so that columns too are shrunk as rows (much faster).
    columns = np.ascontiguousarray(_area_sums(rgb, height).swapaxes(0, 1))
    sums = _area_sums(columns, width).swapaxes(0, 1)
    divisor = rgb.shape[0] * rgb.shape[1]
    return ((sums + divisor // 2) // divisor).astype(np.uint8)  # the mean, rounded half up


def _area_sums(pixels: np.ndarray, n_out: int) -> np.ndarray:
    """Shrink axis 0 to n_out rows, each the sum of the input rows it covers, weighted by how much.

    Measured in 1/n_out of an input row, output row i covers [i * n_in, (i + 1) * n_in): whole rows
    start[i] .. start[i + 1] - 1, less the part[i] units of row start[i] that lie before it, plus the
    part[i + 1] units of row start[i + 1]. So the weights are integers, and the sums exact on any CPU.
    """
    n_in = len(pixels)
    start, part = np.divmod(np.arange(n_out + 1) * n_in, n_out)
    rows = n_in // n_out  # each output covers `rows` or `rows + 1` whole rows
    wide = np.int32 if pixels.dtype == np.uint8 else np.int64  # from uint8, all below 255 * (n_in + 2 * n_out)
    sums = pixels[start[:-1]].astype(wide)
    for offset in range(1, rows):
        sums += pixels[start[:-1] + offset]
    longer = start[1:] - start[:-1] > rows
    sums[longer] += pixels[start[:-1][longer] + rows]
    sums *= n_out
    edges = pixels[np.minimum(start, n_in - 1)].astype(wide)
    edges *= part.astype(wide).reshape(-1, *[1] * (pixels.ndim - 1))
    sums += edges[1:]
    sums -= edges[:-1]
    return sums


RESIZE_POLICIES = {"stretch-area-exact": _stretch_area_exact, "stretch-area": _stretch_area}


def load_model_input(path: str | Path, height: int, width: int, policy: str = RESIZE_POLICY) -> np.ndarray:
    """An image file as the model sees it: RGB uint8, resized to (height, width)."""
    return resize_to_input(read_rgb(path), height, width, policy)
