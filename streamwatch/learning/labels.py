"""Which of the service's own answers an operator should label, so that the labels teach:

- the uncertain ones: P(yes) within `labels.band` of the rule's threshold, measured in log-odds (a
  threshold of 0.0004 has its band at 0.00022..0.00074, not 0..0.15);
- a small random share of plain "no"s (where misses hide) and of confident "yes"es (so that positives
  are labelled too, not only the uncertain and the sampled noes); the draw comes from the picture (a
  hash of its thumbnail and the rule), so the same footage gives the same requests;
- spread over the score range and over time: at most one request per camera x rule x score range
  (the band is four ranges; beyond it, ranges of the same width) every `labels.every_s`;
- never the same picture twice for a camera x rule: a frame whose rule region looks like one of the
  last `RECENT` kept for it (64 x 64 grey thumbnails, no pixel of them more than `SAME_PICTURE` apart:
  sensor noise averages out within a thumbnail pixel, a person walking in does not) teaches nothing new
  and is skipped. The memory is rebuilt from the kept frames after a restart.

They are kept as label requests (the full frame, the question as asked, the model and its answer),
never as alerts and never published."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from streamwatch.alerts.recorder import jpeg
from streamwatch.config import CameraConfig, LabelsConfig
from streamwatch.inference.types import Answer
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.learning.evaluation.thresholds import logit
from streamwatch.pipeline.decision import Decision
from streamwatch.rules.model import Rule
from streamwatch.store.labels import LabelStore, NewLabelRequest
from streamwatch.store.windows import STRIP_QUALITY, strip
from streamwatch.vocabulary import LabelReason

log = logging.getLogger(__name__)

RECENT = 100  # kept frames per camera x rule remembered to skip the same picture again
THUMB = 64  # side of the grey thumbnails compared
SAME_PICTURE = 8.0  # the largest difference (0..255) of any thumbnail pixel for two frames to be the same picture
RANGES = 16  # score ranges each side of the threshold (beyond: the last one)

FRAME_QUALITY = STRIP_QUALITY  # JPEG quality of a kept frame: it is replayed through the model later


class LabelCollector:
    def __init__(
        self,
        store: LabelStore,
        config: LabelsConfig,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.config = store, config
        self._rng = rng  # None: each sampling draw comes from the picture (the same footage, the same requests)
        self._clock = clock
        self._last: dict[tuple[str, str, str, int], float] = {}
        self._recent: dict[tuple[str, str], deque[np.ndarray]] = {}  # thumbnails of the frames kept
        self.duplicates = 0  # frames skipped as the same picture as one kept

    def reason(self, rule: Rule, answer: Answer, draw: float | None = None) -> LabelReason | None:
        """Why this answer should be labelled, or None. Only answers the model gave (not reused ones)
        to yes/no rules. `draw` (0..1) decides a sample: the collector's rng's where it has one."""
        p = answer.confidence
        if rule.answer != "yes_no" or answer.reused or p is None:
            return None
        if self.uncertain(rule, p):
            return LabelReason.UNCERTAIN
        if draw is None:
            draw = self._rng.random() if self._rng is not None else random.random()
        if p < rule.threshold and draw < self.config.sample_no:
            return LabelReason.SAMPLE
        if p >= rule.threshold and draw < self.config.sample_yes:
            return LabelReason.SAMPLE_YES
        return None

    def uncertain(self, rule: Rule, p: float) -> bool:
        return abs(distance(p, rule.threshold)) <= half_band(self.config.band) + 1e-9

    def score_range(self, rule: Rule, p: float | None) -> int:
        """Which range of scores `p` falls in, around the rule's threshold: the band is four of them."""
        if p is None:
            return 0
        width = half_band(self.config.band) / 2 or 1.0
        return max(-RANGES, min(RANGES, math.floor(distance(p, rule.threshold) / width)))

    async def _same_picture(self, camera: CameraConfig, rule: Rule, thumb: np.ndarray) -> bool:
        key = (camera.id, rule.id)
        if key not in self._recent:
            kept = await asyncio.to_thread(self._kept_thumbnails, camera.id, rule)
            self._recent[key] = deque(kept, maxlen=RECENT)
        return any(float(np.abs(seen - thumb).max()) < SAME_PICTURE for seen in self._recent[key])

    def _kept_thumbnails(self, camera: str, rule: Rule) -> list[np.ndarray]:
        """The thumbnails of the newest frames kept for the camera x rule (after a restart)."""
        found = []
        for item in reversed(self.store.list(camera=camera, rule=rule.id, limit=RECENT)):
            path = self.store.frame_path(item)
            try:
                with Image.open(path) as image:
                    found.append(thumbnail(image, rule.roi))
            except (OSError, ValueError) as exc:
                log.debug("label request %s: its frame cannot be read for the memory: %s", item.uid, exc)
        return found

    name = "the label requests"

    async def take(self, decisions: Sequence[Decision]) -> None:
        """A decision sink: each live rule's answer may become a label request."""
        for decision in decisions:
            if decision.live:
                await self.offer(
                    decision.camera,
                    decision.rule,
                    decision.question,
                    decision.answer,
                    decision.image,
                    decision.frame_at,
                    window=decision.window,
                )

    async def offer(
        self,
        camera: CameraConfig,
        rule: Rule,
        question: str,
        answer: Answer,
        image: Image.Image,
        frame_at: float,
        reason: LabelReason | None = None,
        window: Sequence[Image.Image] = (),
    ) -> bool:
        """Keep this answer's frame as a label request if it is one (and the camera x rule's turn; a
        given `reason`, such as a shadow rule's disagreement, takes turns of its own); a failure is
        logged, never raised: labelling must not stop a camera. `window`: the frames a question over
        several frames was asked on, kept with it (store/windows)."""
        if not self.config.enabled or rule.answer != "yes_no":
            return False
        thumb = None
        if reason is None:
            p = answer.confidence
            draw = None
            if self._rng is None and not answer.reused and p is not None and not self.uncertain(rule, p):
                try:
                    thumb = await asyncio.to_thread(thumbnail, image, rule.roi)
                except Exception:
                    log.exception("camera %s rule %s: could not look at a frame to sample", camera.id, rule.id)
                    return False
                draw = picture_draw(thumb, rule.id)
            reason = self.reason(rule, answer, draw)
        if reason is None:
            return False
        key = (camera.id, rule.id, reason.value, self.score_range(rule, answer.confidence))
        now = self._clock()
        if key in self._last and now - self._last[key] < self.config.every_s:
            return False
        try:
            if thumb is None:
                thumb = await asyncio.to_thread(thumbnail, image, rule.roi)
            if await self._same_picture(camera, rule, thumb):
                self.duplicates += 1
                return False
        except Exception:
            log.exception("camera %s rule %s: could not compare a label request's frame", camera.id, rule.id)
            return False
        self._last[key] = now
        new = NewLabelRequest(
            uid=uuid.uuid4().hex,
            camera=camera.id,
            rule=rule.id,
            question=question,
            model=answer.model[:300],
            answer=answer.text,
            confidence=answer.confidence,
            threshold=rule.threshold,
            reason=reason.value,
            frame_at=datetime.fromtimestamp(frame_at, UTC),
            window_frames=len(window) or None,
        )
        try:
            frame = await asyncio.to_thread(jpeg, image, FRAME_QUALITY)
            kept = await asyncio.to_thread(lambda: jpeg(strip(window), STRIP_QUALITY)) if window else None
            await asyncio.to_thread(self.store.add, new, frame, kept)
            self._recent[(camera.id, rule.id)].append(thumb)
        except Exception:
            log.exception("camera %s rule %s: could not keep a label request", camera.id, rule.id)
            return False
        log.debug(
            "label request: camera=%s rule=%s p_yes=%s (%s) id=%s",
            camera.id,
            rule.id,
            answer.confidence,
            reason,
            new.uid,
        )
        return True


def half_band(band: float) -> float:
    """`labels.band` (P(yes) either side of 0.5) as log-odds, the same either side of any threshold."""
    return math.inf if band >= 0.5 else logit(0.5 + band)  # 0.5: every answer is uncertain


def distance(p: float, threshold: float) -> float:
    """How far P(yes) lies from the threshold, in log-odds (negative: below)."""
    return logit(p) - logit(threshold)


def picture_draw(thumb: np.ndarray, rule_id: str) -> float:
    """A number in 0..1 fixed by the picture and the rule: sampling that the same footage repeats."""
    digest = hashlib.sha256(thumb.astype(np.uint8).tobytes() + rule_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def thumbnail(image: Image.Image, roi: tuple[float, float, float, float] | None) -> np.ndarray:
    """The rule's region of the frame as a THUMB x THUMB grey picture, to compare frames cheaply."""
    small = crop_roi(image, roi).convert("L").resize((THUMB, THUMB), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)
