"""Label-preserving jitter of a training picture, as a fixed camera's frames vary: a few per cent of
shift and scale, a mirror image, a little brightness and contrast. A fine-tune on a few dozen reviewed
frames otherwise learns those exact pictures (its loss falls to 1e-4) rather than what sets them apart."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
from PIL import Image

from streamwatch.learning.finetune.example import TrainingExample

SHIFT = 0.04  # of the picture's side, either way
SCALE = (0.92, 1.08)
LIGHT = 0.12  # brightness and contrast, either way


def jitter(example: TrainingExample, rng: random.Random) -> TrainingExample:
    """`example` with its picture jittered (same size, same answer), drawn from `rng`."""
    image = Image.fromarray(example.image)
    width, height = image.size
    scale = rng.uniform(*SCALE)
    dx, dy = rng.uniform(-SHIFT, SHIFT) * width, rng.uniform(-SHIFT, SHIFT) * height
    # the output pixel (x, y) samples the input at ((x - cx) / scale + cx - dx, ...): zoom about the centre
    cx, cy = width / 2, height / 2
    matrix = (1 / scale, 0.0, cx - cx / scale - dx, 0.0, 1 / scale, cy - cy / scale - dy)
    edge = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))  # what comes into view
    moved = image.transform((width, height), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=edge)
    if rng.random() < 0.5:
        moved = moved.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(moved, dtype=np.float32)
    contrast, brightness = 1 + rng.uniform(-LIGHT, LIGHT), rng.uniform(-LIGHT, LIGHT) * 255
    mean = pixels.mean()
    lit = np.clip((pixels - mean) * contrast + mean + brightness, 0, 255).astype(np.uint8)
    return replace(example, image=lit)
