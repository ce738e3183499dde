"""Change gating: while the picture a rule looks at stands still, its last answer is reused.

Per camera x rule, the gate keeps a small grayscale thumbnail of the rule's region (its ROI, or the
whole frame) as it was when the model last answered. At the next due time the new thumbnail is
compared with it: both are blurred (sensor noise and encoder flicker are mostly sub-blur detail), and
the score is the fraction of pixels whose brightness moved by more than `PIXEL_DELTA` (of 255). Below
the rule's `change_threshold`, and while that answer is younger than `max_reuse_s`, the answer is
reused without a model pass; otherwise the model is asked and its answer becomes the new reference.
`max_reuse_s` bounds every reuse, so even a change the score cannot see (a slow global brightness
drift at dusk, an IR switch) is looked at again within that time. Time is the frames' capture time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from streamwatch.inference.types import Answer

THUMB_WIDTH = 128  # pixels across: a distant person still covers a few; ~10 k pixels to compare
PIXEL_DELTA = 8  # of 255: a pixel "changed" when its blurred brightness moved by more than this
BLUR = (5, 5)


def thumbnail(image: Image.Image) -> np.ndarray:
    """The grayscale, blurred, 128-pixel-wide picture the gate compares."""
    gray = np.asarray(image.convert("L"))
    height = max(1, round(gray.shape[0] * THUMB_WIDTH / max(1, gray.shape[1])))
    small = cv2.resize(gray, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA)
    blurred: np.ndarray = cv2.GaussianBlur(small, BLUR, 0)
    return blurred


def change_score(before: np.ndarray, now: np.ndarray) -> float:
    """The fraction of pixels (0..1) that changed between two thumbnails (1.0 when their sizes differ)."""
    if before.shape != now.shape:
        return 1.0
    return float(np.count_nonzero(cv2.absdiff(before, now) > PIXEL_DELTA)) / before.size


@dataclass
class _Reference:
    question: str  # an edited question is asked afresh
    thumb: np.ndarray
    answered_at: float  # frame time of the answer
    answer: Answer


@dataclass
class ChangeGate:
    """The references of one camera's rules. `reusable` says whether the last answer still stands."""

    _references: dict[str, _Reference] = field(default_factory=dict)

    def reusable(
        self, rule: str, question: str, thumb: np.ndarray, at: float, *, threshold: float, max_reuse_s: float
    ) -> Answer | None:
        """The rule's last answer to this question when the picture has not changed since it and it is
        recent enough, else None (then ask the model and `remember` its answer)."""
        reference = self._references.get(rule)
        if reference is None or reference.question != question or threshold <= 0 or max_reuse_s <= 0:
            return None
        if at - reference.answered_at >= max_reuse_s or change_score(reference.thumb, thumb) >= threshold:
            return None
        return reference.answer

    def remember(self, rule: str, question: str, thumb: np.ndarray, at: float, answer: Answer) -> None:
        self._references[rule] = _Reference(question, thumb, at, answer)
