"""The frames a question over several frames was asked on (a rule with `frames` > 1), kept beside the
full frame of its event or label request as one JPEG: the frames side by side, oldest first, each the
rule's region at model size as the model saw it. `streamwatch eval` splits it again to replay the
question; an operator sees the sequence at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from streamwatch.rules.model import MAX_FRAMES

SUFFIX = ".frames.jpg"
STRIP_QUALITY = 92  # JPEG quality: the frames are replayed through the model later


def strip(frames: Sequence[Image.Image]) -> Image.Image:
    """The frames side by side, each at the newest one's size (they share it unless the camera's
    resolution changed within the window)."""
    width, height = frames[-1].size
    sheet = Image.new("RGB", (width * len(frames), height))
    for index, frame in enumerate(frames):
        sheet.paste(
            frame.convert("RGB").resize((width, height)) if frame.size != (width, height) else frame, (index * width, 0)
        )
    return sheet


def split(sheet: Image.Image, count: int) -> tuple[Image.Image, ...]:
    """`strip`'s frames again; a ValueError when the picture cannot hold `count` of them."""
    if not 1 <= count <= MAX_FRAMES or sheet.width % count:
        raise ValueError(f"a strip {sheet.width} pixels wide does not hold {count} frames")
    width = sheet.width // count
    return tuple(sheet.crop((index * width, 0, (index + 1) * width, sheet.height)) for index in range(count))


def beside(frame: Path | str) -> str:
    """Where the strip of a frame stored at `frame` (a path relative to snapshot_dir) goes."""
    text = str(frame)
    return (text[: -len(".jpg")] if text.endswith(".jpg") else text) + SUFFIX
