"""Per camera: every sample interval, the newest frame with every rule that is due -> the model -> the alert
pipeline. A frame that cannot be used is logged and skipped: the loop never ends on one frame."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from PIL import Image

from streamwatch.alerts.recorder import Describe
from streamwatch.config import CameraConfig
from streamwatch.errors import DroppedError, InferenceError
from streamwatch.inference.engine import Engine
from streamwatch.inference.types import AnswerKind
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.learning.shadow_rules import with_shadows
from streamwatch.metrics import Metrics
from streamwatch.pipeline.change import ChangeGate, Verdict, View, view
from streamwatch.pipeline.decision import NOT_GATED, Decision, Sinks
from streamwatch.pipeline.frame_history import FrameHistory, Shape
from streamwatch.rules.loader import ActiveRules
from streamwatch.rules.model import Rule
from streamwatch.rules.schedule import DueTracker

log = logging.getLogger(__name__)

SLACK_S = 0.01  # a sample is due this much early: sleeps end a little late or early
DESCRIBE_TOKENS = 48  # a describe follow-up may answer in a sentence


class Sampler:
    """One camera's sampling loop: when to sample, which rules are due, what to ask the model (or which
    answer stands while the picture does). What follows from each answer is the sinks' business."""

    def __init__(
        self,
        camera: CameraConfig,
        worker: CameraWorker,
        *,
        rules: ActiveRules,
        engine: Engine,
        sinks: Sinks,
        metrics: Metrics,
    ) -> None:
        self.camera, self.worker = camera, worker
        self.rules, self.engine, self.sinks, self.metrics = rules, engine, sinks, metrics
        self.gate = ChangeGate()  # last answers kept while the picture stands still
        self.history = FrameHistory(engine.settings.model.max_image_side)  # for questions over several frames

    async def run(self) -> None:
        tracker = DueTracker(self.camera.sample_interval_s)
        last_seq, next_sample = -1, 0.0
        shapes: set[Shape] = set()
        while True:
            # as often as the questions over several frames need, read as the last tick found the rules
            await asyncio.sleep(FrameHistory.interval_s(shapes, self.camera.sample_interval_s))
            rules = self.rules.for_camera(self.camera)  # after the sleep: a hot reload applies at once
            shapes = FrameHistory.shapes(rules)
            frame = self.worker.latest()
            if frame is None or frame.seq == last_seq:
                continue
            last_seq, now = frame.seq, time.monotonic()
            try:
                if now >= next_sample:
                    next_sample = now + self.camera.sample_interval_s - SLACK_S
                    await self._sample(tracker, frame, rules, shapes)
                elif shapes:  # between samples: only a frame for the questions over several frames
                    await self._remember(frame, await asyncio.to_thread(frame.image), shapes)
            except Exception:
                log.exception(
                    "camera %s: frame %d could not be sampled; going on with the next", self.camera.id, frame.seq
                )

    async def _sample(self, tracker: DueTracker, frame: Frame, rules: list[Rule], shapes: set[Shape]) -> None:
        self.metrics.sample_age.observe(max(0.0, time.time() - frame.captured_at))
        due = with_shadows(tracker.due(rules, time.monotonic(), datetime.now().astimezone()), rules)
        if due:
            image = await asyncio.to_thread(frame.image)  # YUV -> RGB off the event loop, once per frame
            await self.answer(frame, image, due, shapes)
        elif shapes:
            await self._remember(frame, await asyncio.to_thread(frame.image), shapes)

    async def _remember(self, frame: Frame, image: Image.Image, shapes: set[Shape]) -> None:
        """The frame into the rings of this camera's questions over several frames (`shapes`: what they
        look at now; rings of shapes no longer asked are dropped)."""
        if shapes or self.history.bytes():
            await asyncio.to_thread(self.history.add, shapes, frame.captured_at, image)
            self.metrics.frame_history_bytes.labels(self.camera.id).set(self.history.bytes())

    async def answer(
        self, frame: Frame, image: Image.Image, rules: Sequence[Rule], shapes: set[Shape] | None = None
    ) -> None:
        """Ask `rules` about one frame (submitted together, so they share a batch) and hand the decisions
        to the sinks; a rule whose region did not change reuses its last answer. The frame is kept first
        for the questions over several frames (`shapes`: the camera's, when the caller has them)."""
        if shapes is None:
            shapes = FrameHistory.shapes(self.rules.for_camera(self.camera))
        await self._remember(frame, image, shapes)
        decided = await asyncio.gather(*(self._ask(rule, frame, image) for rule in rules))
        await self.sinks.take([decision for decision in decided if decision is not None])

    async def _ask(self, rule: Rule, frame: Frame, image: Image.Image) -> Decision | None:
        """One rule on one frame; what it decided (None when no answer came)."""
        camera = self.camera
        question = rule.prompt(camera)
        kind = AnswerKind.YES_NO if rule.answer == "yes_no" else AnswerKind.GENERATE
        tokens = rule.max_new_tokens or self.engine.settings.model.max_new_tokens
        region, earlier, window = crop_roi(image, rule.roi), list[Image.Image](), tuple[Image.Image, ...]()
        shape = Shape.of(rule)
        if shape is not None:  # a question over several frames: the newest is this one
            found = self.history.window(shape, frame.captured_at)
            if found is None:
                log.debug("camera %s rule %s: waiting for %d frames %.1f s apart", camera.id, rule.id, *shape.wants)
                return None
            window = found
            *earlier, region = window
        area, max_reuse_s = rule.gate(camera)
        at = frame.captured_at
        seen, verdict = None, NOT_GATED
        if area > 0 and max_reuse_s > 0:

            def judged() -> tuple[View, Verdict]:  # one trip to a thread: the view and its comparison
                now = view(region)
                return now, self.gate.judge(rule.id, question, now, at, area=area, max_reuse_s=max_reuse_s)

            seen, verdict = await asyncio.to_thread(judged)
        if verdict.answer is not None:
            answer = dataclasses.replace(verdict.answer, latency_s=0.0, batch_size=0, reused=True)
        else:
            try:
                answer = await self.engine.ask(camera.id, question, region, kind, tokens, tuple(earlier))
            except (DroppedError, InferenceError) as exc:
                log.warning("camera %s rule %s: %s", camera.id, rule.id, exc)
                return None
            if seen is not None:
                self.gate.remember(rule.id, question, seen, at, answer)
        alert = rule.is_alert(answer.text, answer.confidence)
        return Decision(camera, rule, question, answer, alert, at, frame.seq, frame.pts, image, window, verdict)


def describer(engine: Engine) -> Describe:
    """The rules' follow-up question, asked once when an alert opens; its answer goes into the event."""

    async def describe(camera: CameraConfig, rule: Rule, image: Image.Image) -> str | None:
        assert rule.describe is not None
        question = rule.render(camera, rule.describe)
        tokens = max(DESCRIBE_TOKENS, rule.max_new_tokens or 0)
        try:
            return (await engine.ask(camera.id, question, crop_roi(image, rule.roi), AnswerKind.GENERATE, tokens)).text
        except (DroppedError, InferenceError) as exc:
            log.warning("camera %s rule %s: describe failed: %s", camera.id, rule.id, exc)
            return None

    return describe
