"""The images of a chat request: `data:` URIs, or http(s) URLs fetched under the fetch policy. The images
of one request share one pixel budget (one large image, or several frames of a camera)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from urllib.parse import urlsplit

from PIL import Image

from streamwatch.ingest.images import MAX_IMAGE_PIXELS, ImageRejected, decode_image
from streamwatch.serve.errors import ApiError
from streamwatch.serve.fetch import PARAM, FetchPolicy, fetch


def load_images(urls: Sequence[str], policy: FetchPolicy, max_pixels: int = MAX_IMAGE_PIXELS) -> list[Image.Image]:
    """RGB images, in order; ApiError(400/413) naming the image and what is wrong with its URL or bytes."""
    images: list[Image.Image] = []
    for number, url in enumerate(urls, 1):
        left = max_pixels - sum(image.width * image.height for image in images)
        try:
            images.append(load_image(url, policy, left))
        except ApiError as exc:
            if len(urls) == 1:
                raise
            shared = " (the images of one request share that budget)" if "pixels" in exc.message else ""
            raise ApiError(exc.status, f"image {number} of {len(urls)}: {exc.message}{shared}", exc.param) from None
    return images


def load_image(url: str, policy: FetchPolicy, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """An RGB image, or ApiError(400/413) saying what is wrong with the URL or its bytes."""
    if url.startswith("data:"):
        return _decode(_data_uri(url, policy.max_bytes), policy.max_bytes, max_pixels)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ApiError(400, f"image_url must be a data: URI or an http(s) URL, not {scheme or 'a bare path'!r}", PARAM)
    return _decode(fetch(url, policy), policy.max_bytes, max_pixels)


def _data_uri(url: str, max_bytes: int) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise ApiError(400, "image_url data: URI must be base64, like data:image/jpeg;base64,...", PARAM)
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise ApiError(413, f"image is larger than {max_bytes / 1e6:g} MB", PARAM)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image_url data: URI is not valid base64", PARAM) from None


def _decode(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    if len(data) > max_bytes:
        raise ApiError(413, f"image is larger than {max_bytes / 1e6:g} MB", PARAM)
    try:
        return decode_image(data, max_pixels=max(1, max_pixels))
    except ImageRejected as exc:
        raise ApiError(
            413 if exc.too_large else 400, f"image_url does not hold an image this server can read: {exc}", PARAM
        ) from None
