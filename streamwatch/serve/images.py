"""The image of a chat request: a `data:` URI, or an http(s) URL fetched with a timeout and a size cap."""

from __future__ import annotations

import base64
import binascii
import io
import urllib.error
import urllib.request
import warnings
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from streamwatch.redact import redact_url
from streamwatch.serve.errors import ApiError

PARAM = "messages[].content[].image_url"


def load_image(url: str, *, fetch: bool, max_bytes: int, timeout_s: float) -> Image.Image:
    """An RGB image, or ApiError(400) saying what is wrong with the URL or its bytes."""
    if url.startswith("data:"):
        return _decode(_data_uri(url, max_bytes), max_bytes)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ApiError(400, f"image_url must be a data: URI or an http(s) URL, not {scheme or 'a bare path'!r}", PARAM)
    if not fetch:
        raise ApiError(400, "this server does not fetch image URLs (serve.fetch_image_urls = false): "
                            "send the image as a data: URI", PARAM)  # fmt: skip
    return _decode(_fetch(url, max_bytes, timeout_s), max_bytes)


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


def _fetch(url: str, max_bytes: int, timeout_s: float) -> bytes:
    shown = redact_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": "streamwatch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: bytes = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise ApiError(400, f"fetching {shown} failed: HTTP {exc.code}", PARAM) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(400, f"fetching {shown} failed: {reason}", PARAM) from None
    if len(body) > max_bytes:
        raise ApiError(413, f"image at {shown} is larger than {max_bytes / 1e6:g} MB", PARAM)
    return body


def _decode(data: bytes, max_bytes: int) -> Image.Image:
    if len(data) > max_bytes:
        raise ApiError(413, f"image is larger than {max_bytes / 1e6:g} MB", PARAM)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:  # fmt: skip
        raise ApiError(400, f"image_url does not hold an image this server can read ({type(exc).__name__})",
                       PARAM) from None  # fmt: skip
    return image.convert("RGB")
