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


def crop_roi(image: Image.Image, roi: tuple[float, float, float, float] | None) -> Image.Image:
    """Crop to a normalised region (x0, y0, x1, y1 in 0..1); None keeps the whole image."""
    if roi is None:
        return image
    width, height = image.size
    x0, y0, x1, y1 = roi
    box = (
        int(x0 * width),
        int(y0 * height),
        max(int(x0 * width) + 1, round(x1 * width)),
        max(int(y0 * height) + 1, round(y1 * height)),
    )
    return image.crop(box)
