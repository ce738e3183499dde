"""Per camera: the recent samples that questions over several frames look at, kept at model size.

A rule with `frames = 4` and `span_s = 6` asks about the camera's last four samples, 2 s apart (its
spacing). One ring per shape of such questions (region, frames, span): the region as the rule crops it,
downscaled to `model.max_image_side` (what the model would see anyway; never the full frame). A new
sample is appended when the ring's last entry is settled (at least most of a spacing after the one
before it); otherwise it replaces that entry, so the newest entry is always the newest sample and the
older ones stay about a spacing apart. Each ring holds at most frames + 1 entries: memory is bounded by
the camera's questions over several frames and reported (`bytes`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image

from streamwatch.ingest.preprocess import crop_roi, fit_longest_side
from streamwatch.rules.model import Rule

SETTLED = 0.75  # of a spacing: an entry this far after the one before it stays
USABLE = (0.5, 2.0)  # of a spacing: the least and the most gap between two frames of an answered window


@dataclass(frozen=True)
class Shape:
    """What a question over several frames needs: its region and how many frames over how long."""

    roi: tuple[float, float, float, float] | None
    frames: int
    span_s: float

    @property
    def spacing_s(self) -> float:
        return self.span_s / (self.frames - 1)

    @property
    def wants(self) -> tuple[int, float]:
        """(frames, spacing): for messages."""
        return self.frames, self.spacing_s

    @classmethod
    def of(cls, rule: Rule) -> Shape | None:
        """The shape of a rule over several frames; None for a single-frame rule."""
        if rule.frames == 1 or rule.span_s is None:
            return None
        return cls(rule.roi, rule.frames, rule.span_s)


@dataclass(frozen=True)
class _Entry:
    at: float  # the frame's capture time
    image: Image.Image  # the region, at model size


class FrameHistory:
    """One camera's rings of recent samples, one per question shape."""

    def __init__(self, max_image_side: int) -> None:
        self.max_image_side = max_image_side
        self._rings: dict[Shape, deque[_Entry]] = {}

    @staticmethod
    def shapes(rules: Iterable[Rule]) -> set[Shape]:
        return {shape for rule in rules if (shape := Shape.of(rule)) is not None}

    @staticmethod
    def interval_s(shapes: Iterable[Shape], sample_interval_s: float) -> float:
        """How often the camera must be looked at: its sample interval, or more often where a question
        over several frames wants its frames closer together."""
        return min([sample_interval_s, *(shape.spacing_s for shape in shapes)])

    def add(self, shapes: Iterable[Shape], at: float, image: Image.Image) -> None:
        """Keep the frame captured at `at` (the whole picture) in the ring of every shape; rings of shapes
        no longer asked about (rules edited) are dropped. Runs off the event loop (image work)."""
        wanted = set(shapes)
        for gone in set(self._rings) - wanted:
            del self._rings[gone]
        for shape in wanted:
            ring = self._rings.setdefault(shape, deque(maxlen=shape.frames + 1))
            if ring and ring[-1].at >= at:
                continue  # this frame (or a later one) is already in
            entry = _Entry(at, fit_longest_side(crop_roi(image, shape.roi), self.max_image_side))
            if len(ring) >= 2 and ring[-1].at - ring[-2].at < SETTLED * shape.spacing_s:
                ring[-1] = entry  # the last one was only the newest so far
            else:
                ring.append(entry)

    def window(self, shape: Shape, at: float) -> tuple[Image.Image, ...] | None:
        """The shape's frames, oldest first, ending with the frame captured at `at`; None until the ring
        holds enough frames about a spacing apart (after a start, or a reconnect that left a gap)."""
        ring = self._rings.get(shape)
        if ring is None or len(ring) < shape.frames or ring[-1].at != at:
            return None
        entries = list(ring)[-shape.frames :]
        low, high = (bound * shape.spacing_s for bound in USABLE)
        if any(not low <= b.at - a.at <= high for a, b in itertools.pairwise(entries)):
            return None  # too close, or a gap (the camera was away): wait for fresh frames
        return tuple(entry.image for entry in entries)

    def bytes(self) -> int:
        """Memory held by the kept frames (RGB pixels)."""
        return sum(e.image.width * e.image.height * 3 for ring in self._rings.values() for e in ring)
