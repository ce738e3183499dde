"""Which of the service's own answers an operator should label: the uncertain ones (P(yes) within
`labels.band` of the rule's threshold) and a small random share of plain "no"s (where misses hide),
at most one per camera x rule every `labels.every_s`. They are kept as label requests (the full frame,
the question as asked, the model and its answer), never as alerts and never published."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from PIL import Image

from streamwatch.alerts.pipeline import jpeg
from streamwatch.config import CameraConfig, LabelsConfig
from streamwatch.inference.types import Answer
from streamwatch.rules.model import Rule
from streamwatch.store.labels import LabelStore, NewLabelRequest
from streamwatch.store.windows import STRIP_QUALITY, strip
from streamwatch.vocabulary import LabelReason

log = logging.getLogger(__name__)

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
        self._rng = rng or random.Random()
        self._clock = clock
        self._last: dict[tuple[str, str, bool], float] = {}

    def reason(self, rule: Rule, answer: Answer) -> LabelReason | None:
        """Why this answer should be labelled, or None. Only answers the model gave (not reused ones)
        to yes/no rules."""
        p = answer.confidence
        if rule.answer != "yes_no" or answer.reused or p is None:
            return None
        if abs(p - rule.threshold) <= self.config.band:
            return LabelReason.UNCERTAIN
        if p < rule.threshold and self._rng.random() < self.config.sample_no:
            return LabelReason.SAMPLE
        return None

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
        reason = reason or self.reason(rule, answer)
        if reason is None:
            return False
        key, now = (camera.id, rule.id, reason == LabelReason.SHADOW), self._clock()
        if key in self._last and now - self._last[key] < self.config.every_s:
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
        except Exception:
            log.exception("camera %s rule %s: could not keep a label request", camera.id, rule.id)
            return False
        log.info(
            "label request: camera=%s rule=%s p_yes=%s (%s) id=%s",
            camera.id,
            rule.id,
            answer.confidence,
            reason,
            new.uid,
        )
        return True
