"""One decoded frame and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Frame:
    camera_id: str
    seq: int  # 0, 1, 2, ... per camera worker
    captured_at: float  # wall clock, time.time()
    array: np.ndarray = field(repr=False)  # H x W x 3, RGB, uint8
    pts: float | None = None  # stream time in seconds, when known
    keyframe: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return int(self.array.shape[1]), int(self.array.shape[0])

    def image(self) -> Image.Image:
        return Image.fromarray(self.array, "RGB")
