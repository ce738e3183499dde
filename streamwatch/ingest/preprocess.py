"""Image preparation before the model's processor."""

from __future__ import annotations

from PIL import Image


def fit_longest_side(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longest side is at most `max_side` (aspect kept); never upscale. RGB out."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)
