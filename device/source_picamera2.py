"""Picamera2: a Raspberry Pi camera, its ISP scaling the lores stream to the model's input size.

picamera2 comes from the Pi's system packages (apt install python3-picamera2) and is imported
only when this source opens. The Pi 5 gives an RGB lores stream; older Pis only YUV420, which
configure() refuses RGB for. Its "RGB888" arrays hold B,G,R in numpy order.
"""

from __future__ import annotations

import cv2
import numpy as np

from binbot.device.source import Frame, Source, SourceError


def _import_picamera2():
    try:
        from picamera2 import Picamera2
    except ImportError as error:
        raise SourceError(f"picamera2 is not importable ({error}); on the Pi: sudo apt install python3-picamera2")
    return Picamera2


class Picamera2Source(Source):
    def __init__(self, height: int, width: int):
        # YUV420 needs even sizes; the resize to the model input absorbs the odd pixel.
        self.height, self.width = height + height % 2, width + width % 2
        self._camera = None
        self.format = ""

    def describe(self) -> str:
        return f"picamera2 lores {self.width}x{self.height} {self.format}".rstrip()

    def open(self) -> None:
        picamera2 = _import_picamera2()
        try:
            self._camera = picamera2()
            self.format = self._configure("RGB888")
            self._camera.start()
        except (RuntimeError, IndexError, OSError) as error:
            self.close()
            raise SourceError(f"picamera2: {error}") from None

    def _configure(self, lores_format: str) -> str:
        size = (self.width, self.height)
        try:
            self._camera.configure(self._camera.create_preview_configuration(lores={"size": size, "format": lores_format}))
            return lores_format
        except RuntimeError:
            if lores_format == "YUV420":
                raise
            return self._configure("YUV420")  # Pi 4 and older: "lores stream must be YUV"

    def read(self) -> Frame | None:
        try:
            array = self._camera.capture_array("lores")
        except (RuntimeError, OSError) as error:
            raise SourceError(f"picamera2: {error}") from None
        return Frame(to_rgb(array, self.format, self.height, self.width))

    def close(self) -> None:
        if self._camera is not None:
            camera, self._camera = self._camera, None
            try:
                camera.stop()
            finally:
                camera.close()


def to_rgb(array: np.ndarray, lores_format: str, height: int, width: int) -> np.ndarray:
    """A lores array as RGB uint8: "RGB888" is B,G,R in memory; YUV420 is I420 planes, rows maybe padded."""
    if lores_format == "YUV420":
        return cv2.cvtColor(np.ascontiguousarray(array[: height * 3 // 2, :width]), cv2.COLOR_YUV2RGB_I420)
    return np.ascontiguousarray(array[:, :width, 2::-1])
