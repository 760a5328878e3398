"""The one JPEG encoder of the daemon: the live view's frames and the kept frames."""

from __future__ import annotations

import cv2
import numpy as np


def encode_jpeg(rgb: np.ndarray, quality: int, max_width: int | None = None) -> bytes:
    """An RGB frame as JPEG bytes at quality (1-100), scaled down (aspect kept) if wider than max_width."""
    height, width = rgb.shape[:2]
    if max_width is not None and width > max_width:
        rgb = cv2.resize(rgb, (max_width, max(1, round(height * max_width / width))), interpolation=cv2.INTER_AREA)
    # BGR for OpenCV by numpy: cv2.cvtColor's first call would start OpenCV's thread pool, some 7 MB more.
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {width}x{height} frame as JPEG")
    return data.tobytes()
