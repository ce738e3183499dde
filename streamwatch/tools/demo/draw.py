"""Drawing primitives shared by the synthetic scenes: colours, people, boxes, and camera degradations."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

Colour = tuple[int, int, int]
AA = cv2.LINE_AA
WIDTH, HEIGHT = 640, 360  # every scene and demo clip

# Named clothing colours (RGB): a person's description names them.
CLOTHES: dict[str, Colour] = {
    "red": (200, 40, 40),
    "blue": (40, 70, 200),
    "yellow": (230, 200, 40),
    "white": (235, 235, 235),
    "black": (25, 25, 30),
    "green": (40, 150, 60),
    "orange": (240, 130, 30),
    "grey": (128, 128, 128),
}
SKIN: tuple[Colour, ...] = ((230, 190, 160), (200, 150, 110), (150, 100, 70), (95, 65, 45))


def jitter(rng: np.random.Generator, colour: Colour, amount: int = 20) -> Colour:
    r, g, b = (int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)
    return (r, g, b)


@dataclass(frozen=True)
class Figure:
    """A person-like figure: feet at (x, feet_y), `height` pixels tall."""

    x: float
    feet_y: float
    height: float
    shirt: str = "red"
    trousers: str = "blue"
    skin: int = 0
    pose: str = "stand"  # stand | walk | climb
    phase: float = 0.0  # walking / climbing step, 0..1


def draw_figure(img: np.ndarray, f: Figure) -> None:
    """Head, torso, arms and legs as thick strokes; `climb` raises the arms and bends one leg up."""
    h = f.height
    x, feet = f.x, f.feet_y
    hip = feet - 0.47 * h
    shoulder = feet - 0.80 * h
    head_r = max(2, int(0.085 * h))
    limb = max(2, int(0.075 * h))
    shirt, trousers, skin = CLOTHES[f.shirt], CLOTHES[f.trousers], SKIN[f.skin % len(SKIN)]
    swing = np.sin(2 * np.pi * f.phase)
    if f.pose == "climb":
        left_foot = (x - 0.12 * h, feet - 0.18 * h * (1 + swing))
        right_foot = (x + 0.12 * h, feet - 0.18 * h * (1 - swing))
        hands = [(x - 0.2 * h, shoulder - 0.25 * h), (x + 0.2 * h, shoulder - 0.22 * h)]
    else:
        stride = 0.14 * h * swing if f.pose == "walk" else 0.06 * h
        left_foot, right_foot = (x - stride, feet), (x + stride, feet)
        hands = [(x - 0.16 * h - 0.5 * stride, hip + 0.02 * h), (x + 0.16 * h + 0.5 * stride, hip + 0.02 * h)]
    for foot in (left_foot, right_foot):
        _line(img, (x, hip), foot, trousers, limb)
    cv2.ellipse(
        img, _pt(x, (hip + shoulder) / 2), (max(2, int(0.13 * h)), max(3, int(0.2 * h))), 0, 0, 360, shirt, -1, AA
    )
    for hand in hands:
        _line(img, (x, shoulder + 0.03 * h), hand, shirt, max(2, int(0.06 * h)))
    cv2.circle(img, _pt(x, shoulder - 0.1 * h), head_r, skin, -1, AA)


def draw_box(img: np.ndarray, cx: float, cy: float, w: float, h: float, angle: float, colour: Colour) -> None:
    """A cardboard box: filled rotated rectangle, darker outline and a tape stripe."""
    rect = ((cx, cy), (w, h), angle)
    corners = cv2.boxPoints(rect).astype(np.int32)
    cv2.fillPoly(img, [corners], colour, AA)
    dark = tuple(int(c * 0.6) for c in colour)
    cv2.polylines(img, [corners], True, dark, max(1, int(min(w, h) * 0.05)), AA)
    theta = np.deg2rad(angle)
    dx, dy = np.cos(theta) * w / 2, np.sin(theta) * w / 2
    r, g, b = (min(255, int(c * 1.25) + 20) for c in colour)
    tape = (r, g, b)
    _line(img, (cx - dx, cy - dy), (cx + dx, cy + dy), tape, max(1, int(h * 0.08)))


def degrade(img: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0) -> np.ndarray:
    """What a cheap camera does to a picture: exposure and colour drift, blur, sensor noise, JPEG.
    (In uint8 with OpenCV, and noise cut from a seeded bank: per-pixel float work costs more than the
    drawing, and training draws tens of thousands of frames.)"""
    gain = (1 + strength * rng.uniform(-0.15, 0.15)) * (1 + strength * rng.uniform(-0.06, 0.06, size=3))
    offset = strength * rng.uniform(-12, 12)
    colour = np.hstack([np.diag(gain), np.full((3, 1), offset)]).astype(np.float32)
    out = cv2.transform(img, colour)
    sigma = strength * rng.uniform(0, 1.3)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    bank = _noise_bank()
    level = bank[int(rng.integers(len(bank)))]
    height, width = out.shape[:2]
    dy, dx = int(rng.integers(level.shape[0] - height + 1)), int(rng.integers(level.shape[1] - width + 1))
    out = cv2.add(out, level[dy : dy + height, dx : dx + width], dtype=cv2.CV_8U)
    quality = int(rng.integers(35, 92))
    ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])  # channel order is irrelevant
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if ok else None
    return out if decoded is None else np.asarray(decoded, dtype=np.uint8)


@functools.cache
def _noise_bank(height: int = 400, width: int = 720) -> tuple[np.ndarray, ...]:
    """Gaussian sensor noise fields (int16) of standard deviation 1.5 to 7, the same in every process."""
    rng = np.random.default_rng(1234)
    return tuple(np.round(rng.normal(0, sigma, (height, width, 3))).astype(np.int16) for sigma in (1.5, 3, 5, 7))


def vertical_gradient(height: int, width: int, top: Colour, bottom: Colour) -> np.ndarray:
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    column = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return np.broadcast_to(column, (height, width, 3)).astype(np.uint8).copy()


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)


def _line(img: np.ndarray, a: tuple[float, float], b: tuple[float, float], colour: Colour, width: int) -> None:
    cv2.line(img, _pt(*a), _pt(*b), colour, max(1, width), AA)
