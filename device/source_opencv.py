"""OpenCV: a USB/V4L2 camera by index or path, a video file, or a stream URL. OpenCV gives BGR."""

from __future__ import annotations

import cv2

from binbot.device.source import Frame, Source, SourceError


class OpenCVSource(Source):
    def __init__(self, where: str):
        self.where = int(where) if where.isdigit() else where
        self._capture: cv2.VideoCapture | None = None

    def describe(self) -> str:
        return f"opencv {self.where}"

    def open(self) -> None:
        self._capture = cv2.VideoCapture(self.where)
        if not self._capture.isOpened():
            self.close()
            raise SourceError(f"opencv {self.where}: cannot open")

    def read(self) -> Frame | None:
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            # A camera that stops, a stream that drops and a video that ends look alike here;
            # the daemon reopens all three, which restarts a video file from its beginning.
            raise SourceError(f"opencv {self.where}: no frame")
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
