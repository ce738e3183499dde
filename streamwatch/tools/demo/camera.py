"""What a real camera does to a scene over time, applied to a sequence of frames (one per sample): the
degradations a change gate has to live with, each seeded and named.

- `noise`: temporal sensor noise, new every frame (sigma 4 of 255: a day picture);
- `night`: an IR night picture: grey, darker, with heavy temporal noise (sigma 12);
- `h264`: the frames through H.264 at a low bitrate (CRF 36) with day noise: artefacts that move;
- `exposure`: auto-exposure steps, the whole picture 18 % brighter from a third of the way, 15 %
  darker than at first from two thirds;
- `drift`: a slow exposure drift, +-15 % over 40 frames (clouds, dusk);
- `cloud`: a soft shadow, 30 % darker at its centre, crossing the picture;
- `jitter`: the camera shaking, a random sub-pixel shift every frame (sigma 0.5 pixels);
- `rain`: streaks of rain, new every frame.

Each takes the frames as RGB uint8 arrays of one size and gives new ones of the same size.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import cv2
import numpy as np

Frames = Sequence[np.ndarray]

DAY_NOISE, NIGHT_NOISE = 4.0, 12.0
JITTER_PX = 0.5
CRF = 36


def _noisy(frame: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return np.clip(frame.astype(np.float32) + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8)


def _gain(frame: np.ndarray, gain: float | np.ndarray) -> np.ndarray:
    return np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def noise(frames: Frames, rng: np.random.Generator) -> list[np.ndarray]:
    return [_noisy(frame, rng, DAY_NOISE) for frame in frames]


def night(frames: Frames, rng: np.random.Generator) -> list[np.ndarray]:
    grey = [np.repeat(f.astype(np.float32).mean(axis=2, keepdims=True) * 0.6 + 10, 3, axis=2) for f in frames]
    return [_noisy(np.clip(g, 0, 255).astype(np.uint8), rng, NIGHT_NOISE) for g in grey]


def exposure(frames: Frames, _rng: np.random.Generator) -> list[np.ndarray]:
    third = max(1, len(frames) // 3)
    return [_gain(f, 1.0 if i < third else 1.18 if i < 2 * third else 0.85) for i, f in enumerate(frames)]


def drift(frames: Frames, _rng: np.random.Generator) -> list[np.ndarray]:
    return [_gain(f, 1 + 0.15 * np.sin(2 * np.pi * i / 40)) for i, f in enumerate(frames)]


def cloud(frames: Frames, _rng: np.random.Generator) -> list[np.ndarray]:
    """A shadow as wide as a third of the picture, crossing it from left to right over the frames."""
    out = []
    for i, frame in enumerate(frames):
        height, width = frame.shape[:2]
        centre = -width / 3 + (width * 5 / 3) * i / max(1, len(frames) - 1)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        shade = 1 - 0.3 * np.exp(-(((xs - centre) / (width / 3)) ** 2 + ((ys - height / 2) / (height / 3)) ** 2))
        out.append(_gain(frame, shade[..., None]))
    return out


def jitter(frames: Frames, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for frame in frames:
        dx, dy = rng.normal(0, JITTER_PX, 2)
        height, width = frame.shape[:2]
        shift = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
        moved = cv2.warpAffine(frame, shift, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out.append(np.asarray(moved, dtype=np.uint8))
    return out


def rain(frames: Frames, rng: np.random.Generator) -> list[np.ndarray]:
    """About one streak (1 pixel wide, 18 long, pale) per 3,000 pixels, new every frame."""
    out = []
    for frame in frames:
        height, width = frame.shape[:2]
        wet = frame.copy()
        for _ in range(height * width // 3000):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.line(wet, (x, y), (x + 3, y + 18), (200, 200, 210), 1)
        out.append(wet)
    return out


def h264(frames: Frames, rng: np.random.Generator) -> list[np.ndarray]:
    """Day noise, then H.264 (libx264, CRF 36) and back: the encoder's artefacts, new every frame."""
    import av

    noisy = noise(frames, rng)
    height, width = noisy[0].shape[:2]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        stream.options = {"crf": str(CRF), "preset": "veryfast"}
        for frame in noisy:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[: stream.height, : stream.width]))
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return [cv2.copyMakeBorder(f, 0, height - f.shape[0], 0, width - f.shape[1], cv2.BORDER_REPLICATE) for f in decoded]


KINDS: dict[str, Callable[[Frames, np.random.Generator], list[np.ndarray]]] = {
    "noise": noise,
    "night": night,
    "h264": h264,
    "exposure": exposure,
    "drift": drift,
    "cloud": cloud,
    "jitter": jitter,
    "rain": rain,
}


def degraded(frames: Frames, kind: str, seed: int = 0) -> list[np.ndarray]:
    """`frames` as a camera of `kind` would give them (a KeyError names an unknown kind)."""
    if kind not in KINDS:
        raise KeyError(f"no degradation {kind!r}: one of {', '.join(KINDS)}")
    return KINDS[kind](frames, np.random.default_rng(seed))
