"""One decoded frame and where it came from. Pixels are converted to RGB only when someone looks."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image


class Frame:
    """A camera frame with its metadata.

    `source` is either an RGB array (H x W x 3, uint8) or a decoded PyAV `VideoFrame` (YUV as the
    decoder produced it). The RGB conversion runs on first use of `array`, in the thread that asks,
    so a camera whose frames are never sampled never pays for it.
    """

    __slots__ = ("_array", "_lock", "_source", "camera_id", "captured_at", "height", "keyframe", "pts", "seq", "width")

    def __init__(
        self,
        camera_id: str,
        seq: int,
        captured_at: float,
        source: np.ndarray | Any,
        pts: float | None = None,
        keyframe: bool = False,
    ) -> None:
        self.camera_id = camera_id
        self.seq = seq  # 0, 1, 2, ... per camera worker, across reconnects
        self.captured_at = captured_at  # wall clock (time.time()) when the frame left the decoder
        self.pts = pts  # stream time in seconds, when known
        self.keyframe = keyframe
        if isinstance(source, np.ndarray):
            if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
                raise ValueError(f"expected an H x W x 3 uint8 RGB array, got {source.shape} {source.dtype}")
            self.height, self.width = int(source.shape[0]), int(source.shape[1])
            self._array: np.ndarray | None = source
            self._source: Any = None
        else:
            self.width, self.height = int(source.width), int(source.height)
            self._array = None
            self._source = source
        self._lock = threading.Lock()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.width, self.height

    @property
    def array(self) -> np.ndarray:
        """H x W x 3 RGB uint8; converted from the decoder's format once, on first use."""
        with self._lock:
            if self._array is None:
                self._array = self._source.to_ndarray(format="rgb24")
                self._source = None  # release the decoder's buffer
            return self._array

    def image(self) -> Image.Image:
        return Image.fromarray(self.array, "RGB")

    def __repr__(self) -> str:
        return (
            f"Frame(camera_id={self.camera_id!r}, seq={self.seq}, captured_at={self.captured_at:.3f}, "
            f"pts={self.pts}, keyframe={self.keyframe}, size={self.width}x{self.height})"
        )
