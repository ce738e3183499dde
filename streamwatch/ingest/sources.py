"""Open camera sources with PyAV: rtsp://, http(s):// streams, video files and image folders."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np
from av.codec.hwaccel import HWAccel
from PIL import Image

from streamwatch.errors import ImageRejected, SourceError
from streamwatch.ingest.images import decode_image
from streamwatch.redact import redact_url, scrub

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")


def is_network(url: str) -> bool:
    return urlsplit(url).scheme.lower() in NETWORK_SCHEMES


def local_path(url: str) -> Path:
    return Path(url[len("file://") :] if url.startswith("file://") else url).expanduser()


def open_container(
    url: str,
    *,
    transport: str = "tcp",
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
    hwaccel: HWAccel | None = None,
) -> av.container.InputContainer:
    """Open a stream or file for decoding, with timeouts so a silent server cannot hang us."""
    options: dict[str, str] = {}
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        # probing 0.5 s instead of FFmpeg's 5 s: the first frame arrives ~2 s sooner after every connect
        options = {"rtsp_transport": transport, "analyzeduration": "500000"}
    target = url if is_network(url) else str(local_path(url))
    if not is_network(url) and not Path(target).exists():
        raise SourceError(f"{target}: file not found")
    if is_network(url):
        _resolve(url)
    started = time.monotonic()
    try:
        return av.open(target, mode="r", options=options, timeout=(open_timeout_s, read_timeout_s), hwaccel=hwaccel)
    except (av.FFmpegError, OSError) as exc:
        if time.monotonic() - started >= 0.95 * open_timeout_s:
            raise SourceError(
                f"cannot open {redact_url(url)}: timed out after {open_timeout_s:g} s "
                "(the server accepted the connection but sent nothing usable)"
            ) from None
        raise SourceError(scrub(f"cannot open {redact_url(url)}: {_reason(exc)}")) from None


def _reason(exc: BaseException) -> str:
    """FFmpeg's error text, made plain: no errno numbers, no repeated URL; timeouts say so."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text)


def _resolve(url: str) -> None:
    """FFmpeg reports an unknown host as a bare I/O error; say what it is."""
    host = urlsplit(url).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise SourceError(f"cannot open {redact_url(url)}: cannot resolve host {host!r} ({reason})") from None


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB pixels; its pixel count is checked before it is decoded."""
    if not path.exists():
        raise SourceError(f"{path}: file not found")
    try:
        return np.asarray(decode_image(path))
    except ImageRejected as exc:
        raise SourceError(f"{path}: {exc}") from None


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def grab_frame(url: str, *, transport: str = "tcp", timeout_s: float = 10.0) -> Image.Image:
    """One frame from an image file, an image folder (the first image), a video file or a stream."""
    if not is_network(url):
        path = local_path(url)
        if path.is_dir():
            files = image_files(path)
            if not files:
                raise SourceError(f"{path}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            return Image.fromarray(read_image(files[0]))
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return Image.fromarray(read_image(path))
    with open_container(url, transport=transport, open_timeout_s=timeout_s, read_timeout_s=timeout_s) as container:
        for frame in decode_video(container, url):
            image: Image.Image = frame.to_image()
            return image
    raise SourceError(f"{redact_url(url)}: no video frame could be decoded")


def decode_video(container: av.container.InputContainer, url: str) -> Iterator[av.VideoFrame]:
    if not container.streams.video:
        raise SourceError(f"{redact_url(url)}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
        yield from container.decode(stream)
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(scrub(f"{redact_url(url)}: decoding failed: {exc}")) from None
