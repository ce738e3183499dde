"""Decoding image bytes nobody vouched for: bounded in bytes and in pixels before any decoding.

A PNG of a hundred kilobytes can declare 30000x30000 pixels (2.7 GB once decoded). The header is
read first and the image refused when it declares more than `MAX_IMAGE_PIXELS`; only then are the
pixels decoded. A file cut short is refused even where the decoder would make do with it (a PNG's
chunks are checked up to IEND, a JPEG must end with its end-of-image marker). Used by web uploads,
`streamwatch serve`, image-folder cameras and `streamwatch ask`.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from streamwatch.errors import ImageRejected
from streamwatch.ingest.preprocess import fit_longest_side

PNG_END = b"IEND\xaeB`\x82"  # the last chunk of every PNG, with its (constant) CRC
MAX_IMAGE_PIXELS = 36_000_000  # 8K (7680x4320) fits; a camera frame is far smaller


def _check_whole(image: Image.Image, data: bytes) -> None:
    """ImageRejected when the file was cut short or damaged where decoding alone would not notice: a PNG
    whose chunks fail their CRC or stop before IEND (PIL decodes a PNG cut inside its last chunk), a
    JPEG without its end-of-image marker."""
    if image.format == "PNG":
        try:
            image.verify()  # every chunk's CRC, up to IEND
        except (SyntaxError, OSError, ValueError) as exc:
            raise ImageRejected(f"the PNG is damaged or cut short ({exc})") from None
        if not data.endswith(PNG_END):
            raise ImageRejected("the PNG is cut short (it does not end with its IEND chunk)")
    elif image.format == "JPEG" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageRejected("the JPEG is cut short (no end-of-image marker)")


def declared_size(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) from the header, nothing decoded; ImageRejected when it is not an image or declares
    more than `max_pixels`."""
    with _reading(max_pixels), Image.open(io.BytesIO(data)) as image:
        return _counted(image, max_pixels)


def decode_image(data: bytes | Path, *, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int = 0) -> Image.Image:
    """An RGB image, or ImageRejected saying why (not an image, damaged or cut short, too many pixels).
    With `max_side`, shrunk at once to at most that long a side (`fit_longest_side`, as the backends do):
    the full-size picture does not outlive the decode."""
    with _reading(max_pixels):
        if isinstance(data, Path):
            data = data.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            _counted(image, max_pixels)
            _check_whole(image, data)
        with Image.open(io.BytesIO(data)) as image:  # verify() leaves an image that cannot load
            image.load()
            rgb = image.convert("RGB")
    return fit_longest_side(rgb, max_side) if max_side > 0 else rgb


def _counted(image: Image.Image, max_pixels: int) -> tuple[int, int]:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            f"the image is {width}x{height} pixels; at most {max_pixels / 1e6:g} million pixels are decoded",
            too_large=True,
        )
    return width, height


@contextlib.contextmanager
def _reading(max_pixels: int) -> Iterator[None]:
    """PIL's own complaints as ImageRejected."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageRejected:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:  # PIL's own, coarser guard
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(declared.group(1)) / 1e6:g} million" if declared else "too many"
        raise ImageRejected(
            f"the image declares {count} pixels; at most {max_pixels / 1e6:g} million pixels are decoded",
            too_large=True,
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"not a readable image (JPEG, PNG, WebP, BMP, ...): {type(exc).__name__}") from None
