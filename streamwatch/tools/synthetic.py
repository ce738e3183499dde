"""Generate H.264 test and demo clips with PyAV: moving shapes over a static scene."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def scene(width: int, height: int, t: float) -> np.ndarray:
    """A yard with a fence and a figure walking along it; deterministic in `t`."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = (90, 140, 80)  # grass
    frame[: height // 3] = (150, 180, 215)  # sky
    fence_top, fence_bottom = height // 3, height // 2
    frame[fence_top:fence_bottom:6] = (70, 70, 70)
    frame[fence_top:fence_bottom, :: max(8, width // 40)] = (60, 60, 60)
    x = int((0.1 + 0.8 * ((t / 8.0) % 1.0)) * width)
    w, h = max(6, width // 30), max(16, height // 6)
    top = fence_bottom - h // 2
    frame[top : top + h, max(0, x - w // 2) : x + w // 2] = (180, 40, 40)  # body
    frame[top - w : top, max(0, x - w // 3) : x + w // 3] = (230, 190, 160)  # head
    return frame


def write_clip(
    path: Path,
    *,
    seconds: float = 8.0,
    fps: int = 10,
    width: int = 640,
    height: int = 360,
    gop: int | None = None,
    bframes: int = 0,
    bit_rate: int | None = None,
    grain: int = 0,
) -> Path:
    """Encode `seconds` of the scene as H.264 (yuv420p, keyframe every `gop` frames, default 1 s).

    `grain` adds sensor-like noise of that amplitude so the bitrate (and the decoder's work) is like a
    real camera's; `bit_rate` (bits/s) then caps it as a camera's encoder would.
    """
    rng = np.random.default_rng(0)
    noise = [rng.integers(-grain, grain + 1, (height, width, 1), dtype=np.int16) for _ in range(7)] if grain else []

    def frames() -> Iterator[np.ndarray]:
        for index in range(int(seconds * fps)):
            pixels = scene(width, height, index / fps)
            if noise:
                pixels = np.clip(pixels + noise[index % len(noise)], 0, 255).astype(np.uint8)
            yield pixels

    return encode_clip(path, frames(), fps=fps, width=width, height=height, gop=gop, bframes=bframes, bit_rate=bit_rate)


def encode_clip(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: int,
    width: int,
    height: int,
    gop: int | None = None,
    bframes: int = 0,
    bit_rate: int | None = None,
    crf: int | None = None,
) -> Path:
    """Encode RGB frames of `width` x `height` as H.264 (yuv420p, keyframe every `gop` frames, default 1 s)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop or fps
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        options = {"preset": "veryfast", "sc_threshold": "0", "bf": str(bframes)}
        if crf is not None:
            options["crf"] = str(crf)
        stream.codec_context.options = options if bframes else {**options, "tune": "zerolatency"}
        stream.time_base = Fraction(1, fps)
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
