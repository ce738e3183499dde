"""Change gating: while the picture a rule looks at stands still, its last answer is reused.

Per camera x rule, the gate keeps a view of the rule's region (its ROI, or the whole frame) as it was
when the model last answered: grey, at most `VIEW_SIDE` pixels on its longer side, lightly blurred.
At the next due time the new view is compared with it, in this order (the reasons are measured on
real footage, bench/gating-footage.md):

1. **Light.** When the region as a whole became more than `LIGHT_JUMP` times brighter or darker,
   the model is asked: a light switched on or off, a camera switching to IR night mode (an
   auto-exposure step or a cloud is far less; dusk, between two answers at most `max_reuse_s`
   apart, too). Otherwise the new view is brought to the old one's light by a local gain: the ratio
   of the two, each averaged over a window of at least `LIGHT_WINDOW` source pixels. Auto-exposure steps, slow
   drifts and a cloud's shadow change the light smoothly over the picture; a person or an object is
   much smaller than the window, so it keeps its contrast. Pixels nearly white in both views are left
   out (overexposed: their difference tells nothing); a person in front of a white wall is not.
2. **Noise.** The noise of the difference is measured on the picture itself (the median absolute
   deviation: robust while less than half of it changed). A pixel changed when it moved by more than
   `PIXEL_DELTA` or 2.5 times that noise, whichever is more; when the noise is above `NOISE_LIMIT`
   nothing can be told apart and the model is asked.
3. **Shake.** A camera shaking moves the whole picture: the shift from the old view (phase
   correlation, to a fraction of a pixel) is undone first when it is at most `SHAKE_PX` source pixels
   each way (the strip it brings in at the border repeats the view's edge). What a shift leaves (a turn, a
   sway, a shift misjudged by a fraction) is allowed where both pictures have edges: brightness moves
   by `SHAKE_PX` source pixels times the steepest slope at or next to a pixel (the gentler of the two
   pictures: edges only one of them has, a newcomer's or a leaver's own, excuse nothing).
4. **Area.** Changed pixels next to each other form patches; the largest patch's area is counted in
   source pixels. At `area` or more (a camera's `change_area`, 16 by default: a distant person's
   feet entering a lawn at night, the smallest labelled change of bench/gating-footage.md, is 16-29;
   a 20 x 40 person is far above it; one rain streak is about that)
   the model is asked.

Below that, and while the last answer is younger than `max_reuse_s`, the answer is reused without a
model pass. `max_reuse_s` bounds every reuse, so even a change the gate cannot see is looked at
again within that time. Time is the frames' capture time. Each decision says why (`Verdict`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from streamwatch.inference.types import Answer

VIEW_SIDE = 384  # the view's longer side at most: a 20 x 40 person in a 1920-wide frame covers 4 x 8 of its pixels
BLUR = (5, 5)
PIXEL_DELTA = 8.0  # of 255: the least a pixel must move to count as changed
NOISE_SIGMAS = 2.5  # ... or this many times the picture's measured noise
NOISE_LIMIT = 6.0  # noise (of the blurred difference, of 255) above which nothing can be told: ask
SHAKE_PX = 3.0  # source pixels the camera may shake by: edges may move that far
LIGHT_WINDOW = 96  # source pixels: the least side of the window light is evened out over
CLIPPED = 235  # of 255 (blurred): a pixel this bright in both views is left out (overexposed)
LIGHT_JUMP = 1.6  # the region's overall light changed by more than this factor: a light switched, ask
MIN_SHIFT = 0.1  # view pixels: a smaller shift of the whole picture is left as it is
MIN_RESPONSE = 0.1  # phase correlation's peak below this: no clear shift of the whole picture
MIN_STEADY_SIDE = 16  # view pixels: a smaller region is not steadied (too little to correlate)


@dataclass(frozen=True)
class View:
    """What the gate compares: a grey, blurred picture (uint8: a 4:3 region keeps 110 kB) and how many
    source pixels one of its pixels spans across (`scale`)."""

    pixels: np.ndarray
    scale: float


def view(image: Image.Image) -> View:
    """The gate's view of a picture (a region of a frame)."""
    gray = np.asarray(image.convert("L"))
    height, width = gray.shape
    scale = max(1.0, max(height, width) / VIEW_SIDE)
    if scale > 1:
        size = (max(1, round(width / scale)), max(1, round(height / scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    pixels: np.ndarray = cv2.GaussianBlur(gray, BLUR, 0)
    return View(pixels, width / gray.shape[1])


@dataclass(frozen=True)
class Change:
    """How two views differ: the largest changed patch (source pixels), the noise assumed (of 255) and
    the overall light of the new view relative to the old one."""

    area: float
    noise: float
    noisy: bool = False  # too noisy to tell: counts as changed
    gain: float = 1.0  # mean brightness now / before

    @property
    def light_switched(self) -> bool:
        return not 1 / LIGHT_JUMP <= self.gain <= LIGHT_JUMP


def compare(before: View, now: View) -> Change:
    """The largest changed patch between two views of one region (its whole area when their sizes differ).
    Where the views differ, they are compared again with the new one steadied (a shaking camera)."""
    if before.pixels.shape != now.pixels.shape:
        return Change(float(max(before.pixels.size, now.pixels.size)) * before.scale**2, 0.0)
    a, b = before.pixels.astype(np.float32), now.pixels.astype(np.float32)
    found = _changes(a, b, before.scale)
    if not found.area:
        return found  # a still picture (the usual case) costs one comparison; a light jump or noise: asked
    steady = _steadied(a, b, SHAKE_PX / before.scale)
    return found if steady is b else _changes(a, steady, before.scale)


def _changes(a: np.ndarray, b: np.ndarray, scale: float) -> Change:
    """Two grey views (float32) compared: how they differ."""
    gain = (float(b.mean()) + 4) / (float(a.mean()) + 4)
    jump = Change(0.0, 0.0, gain=gain)  # judged on the light alone
    if jump.light_switched:
        return jump
    clipped = np.minimum(a, b) >= CLIPPED  # white in both: nothing to tell
    b = b * _light(a, b, scale, 1 / gain)
    difference = b - a
    difference[clipped] = 0
    centred = np.abs(difference - float(np.median(difference)))
    noise = 1.4826 * float(np.median(centred))
    if noise > NOISE_LIMIT:
        return Change(0.0, noise, noisy=True, gain=gain)
    allowed = max(PIXEL_DELTA, NOISE_SIGMAS * noise) + _steepness(a, b) * (SHAKE_PX / scale)
    return Change(_largest(centred > allowed, scale), noise, gain=gain)


def _largest(changed: np.ndarray, scale: float) -> float:
    """The largest patch of changed pixels next to each other, in source pixels."""
    if not changed.any():
        return 0.0
    near = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8))  # a patch split by an edge is one
    count, labels = cv2.connectedComponents(near, connectivity=8)
    return int(np.bincount(labels[changed], minlength=count).max()) * scale**2


def _steadied(a: np.ndarray, b: np.ndarray, limit: float) -> np.ndarray:
    """`b` moved back by the camera's shake: the shift of the whole picture from `a` (phase
    correlation, to a fraction of a pixel), when it is at most `limit` view pixels each way. A larger
    or unclear shift leaves `b` as it is (the shake allowance and the comparison then judge it). The
    strip the move brings in at the border repeats the view's own edge: nothing is left out."""
    height, width = a.shape
    if min(height, width) < MIN_STEADY_SIDE:
        return b
    (dx, dy), response = cv2.phaseCorrelate(a, b, _window(height, width))
    if max(abs(dx), abs(dy)) < MIN_SHIFT or max(abs(dx), abs(dy)) > limit or response < MIN_RESPONSE:
        return b
    back = np.array([[1, 0, -dx], [0, 1, -dy]], dtype=np.float32)
    moved: np.ndarray = cv2.warpAffine(
        b, back, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return moved


@functools.cache
def _window(height: int, width: int) -> np.ndarray:
    window: np.ndarray = cv2.createHanningWindow((width, height), cv2.CV_32F)
    return window


def _light(a: np.ndarray, b: np.ndarray, scale: float, overall: float) -> np.ndarray | float:
    """The gain that brings `b` to `a`'s light: local over a window of LIGHT_WINDOW source pixels or
    more (a quarter of the picture when that is larger), `overall` (the means' ratio) when the window
    spans the picture."""
    height, width = a.shape
    side = max(3, round(LIGHT_WINDOW / scale)) | 1
    if side >= max(height, width):
        return overall
    mean_a = cv2.blur(a, (side, side), borderType=cv2.BORDER_REFLECT)
    mean_b = cv2.blur(b, (side, side), borderType=cv2.BORDER_REFLECT)
    gain: np.ndarray = np.clip((mean_a + 4) / (mean_b + 4), 0.5, 2.0)
    return gain


def _steepness(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel, how steep the picture is at or next to it (of 255 per pixel): in each view the
    steepest slope within one pixel, and of the two views the gentler. A picture shifted by d pixels
    differs from the other at x by at most d times the steepest slope within d of x, in either view
    (the slope at x alone misses thin lines, a window's frame, whose middle is flat). Taking the
    gentler view keeps a newcomer's or a leaver's own edges, which only one view has, from excusing
    them."""
    steepest = []
    for picture in (a, b):
        dx = cv2.Sobel(picture, cv2.CV_32F, 1, 0, ksize=3) / 8
        dy = cv2.Sobel(picture, cv2.CV_32F, 0, 1, ksize=3) / 8
        steepest.append(cv2.dilate(cv2.magnitude(dx, dy), np.ones((3, 3), np.uint8)))
    gentler: np.ndarray = np.minimum(*steepest)
    return gentler


@dataclass(frozen=True)
class Verdict:
    """Whether a rule's last answer stands, and why.

    `why`: `reused` (nothing changed enough), `changed` (a patch of `area` source pixels or more),
    `light` (the region's light jumped by more than `LIGHT_JUMP`), `noisy` (too noisy to tell), `old`
    (the answer is `max_reuse_s` old), `first` (no answer yet), `question` (the question was edited),
    `off` (gating is off for the rule)."""

    answer: Answer | None
    why: str
    area: float = 0.0  # the largest changed patch, source pixels
    noise: float = 0.0  # the noise the gate assumed, of 255
    age_s: float = 0.0  # of the last answer

    @property
    def compared(self) -> bool:
        """Whether two pictures were compared (`area` and `noise` are measured)."""
        return self.why in ("reused", "changed", "light", "noisy")

    def seen(self) -> tuple[str, float | None, float | None]:
        """why, area and noise (None where nothing was compared), for the API's latest answers."""
        return (self.why, self.area, self.noise) if self.compared else (self.why, None, None)

    def describe(self) -> str:
        """For a log line: `gate=changed area=812px noise=1.9`."""
        if not self.compared:
            return f"gate={self.why}" + (f" age={self.age_s:.0f}s" if self.why == "old" else "")
        return f"gate={self.why} area={self.area:.0f}px noise={self.noise:.1f} age={self.age_s:.0f}s"


@dataclass
class _Reference:
    question: str  # an edited question is asked afresh
    view: View
    answered_at: float  # frame time of the answer
    answer: Answer


@dataclass
class ChangeGate:
    """The references of one camera's rules. `judge` says whether the last answer still stands."""

    _references: dict[str, _Reference] = field(default_factory=dict)

    def judge(self, rule: str, question: str, now: View, at: float, *, area: float, max_reuse_s: float) -> Verdict:
        """Whether the rule's last answer to this question still stands for the picture `now` (then
        `answer` is it); otherwise ask the model and `remember` its answer."""
        reference = self._references.get(rule)
        if area <= 0 or max_reuse_s <= 0:
            return Verdict(None, "off")
        if reference is None:
            return Verdict(None, "first")
        if reference.question != question:
            return Verdict(None, "question")
        age = at - reference.answered_at
        if age >= max_reuse_s:
            return Verdict(None, "old", age_s=age)
        change = compare(reference.view, now)
        if change.light_switched:
            return Verdict(None, "light", change.area, change.noise, age)
        if change.noisy:
            return Verdict(None, "noisy", change.area, change.noise, age)
        if change.area >= area:
            return Verdict(None, "changed", change.area, change.noise, age)
        return Verdict(reference.answer, "reused", change.area, change.noise, age)

    def remember(self, rule: str, question: str, now: View, at: float, answer: Answer) -> None:
        self._references[rule] = _Reference(question, now, at, answer)
