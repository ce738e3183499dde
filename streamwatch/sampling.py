"""Per camera: every sample interval, the newest frame with every rule that is due -> the model -> the alert
pipeline. A frame that cannot be used is logged and skipped: the loop never ends on one frame."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from PIL import Image

from streamwatch.alerts.pipeline import AlertPipeline, Decision, Describe
from streamwatch.change import ChangeGate, thumbnail
from streamwatch.config import CameraConfig
from streamwatch.inference.engine import Engine
from streamwatch.inference.types import AnswerKind, DroppedError, InferenceError
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.metrics import Metrics
from streamwatch.rules.loader import ActiveRules
from streamwatch.rules.model import Rule
from streamwatch.rules.schedule import DueTracker
from streamwatch.web.context import LastAnswer

log = logging.getLogger(__name__)

DESCRIBE_TOKENS = 48  # a describe follow-up may answer in a sentence


@dataclass
class AnswerLog:
    """The latest answer per camera x rule (the web UI shows them) and how many decisions were made."""

    latest: dict[tuple[str, str], LastAnswer] = field(default_factory=dict)
    decisions: int = 0


class Sampler:
    def __init__(
        self,
        camera: CameraConfig,
        worker: CameraWorker,
        *,
        rules: ActiveRules,
        engine: Engine,
        pipeline: AlertPipeline,
        answers: AnswerLog,
        metrics: Metrics,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.camera, self.worker = camera, worker
        self.rules, self.engine, self.pipeline = rules, engine, pipeline
        self.answers, self.metrics, self.on_decision = answers, metrics, on_decision
        self.gate = ChangeGate()  # last answers kept while the picture stands still

    async def run(self) -> None:
        tracker = DueTracker(self.camera.sample_interval_s)
        last_seq = -1
        while True:
            await asyncio.sleep(self.camera.sample_interval_s)
            frame = self.worker.latest()
            if frame is None or frame.seq == last_seq:
                continue
            last_seq = frame.seq
            try:
                await self._sample(tracker, frame)
            except Exception:
                log.exception(
                    "camera %s: frame %d could not be sampled; going on with the next", self.camera.id, frame.seq
                )

    async def _sample(self, tracker: DueTracker, frame: Frame) -> None:
        self.metrics.sample_age.observe(max(0.0, time.time() - frame.captured_at))
        due = tracker.due(self.rules.for_camera(self.camera), time.monotonic(), datetime.now().astimezone())
        if due:
            image = await asyncio.to_thread(frame.image)  # YUV -> RGB off the event loop, once per frame
            await self.answer(frame, image, due)

    async def answer(self, frame: Frame, image: Image.Image, rules: Sequence[Rule]) -> None:
        """Ask `rules` about one frame (submitted together, so they share a batch) and feed each answer
        to the alert pipeline; a rule whose region did not change reuses its last answer."""
        await asyncio.gather(*(self._ask(rule, frame, image) for rule in rules))

    async def _ask(self, rule: Rule, frame: Frame, image: Image.Image) -> None:
        camera = self.camera
        question = rule.render(camera)
        kind = AnswerKind.YES_NO if rule.answer == "yes_no" else AnswerKind.GENERATE
        tokens = rule.max_new_tokens or self.engine.settings.model.max_new_tokens
        region = crop_roi(image, rule.roi)
        thumb = await asyncio.to_thread(thumbnail, region)
        threshold = camera.change_threshold if rule.change_threshold is None else rule.change_threshold
        max_reuse_s = camera.max_reuse_s if rule.max_reuse_s is None else rule.max_reuse_s
        at = frame.captured_at
        answer = self.gate.reusable(rule.id, question, thumb, at, threshold=threshold, max_reuse_s=max_reuse_s)
        if answer is not None:
            answer = dataclasses.replace(answer, latency_s=0.0, batch_size=0, reused=True)
        else:
            try:
                answer = await self.engine.ask(camera.id, question, region, kind, tokens)
            except (DroppedError, InferenceError) as exc:
                log.warning("camera %s rule %s: %s", camera.id, rule.id, exc)
                return
            self.gate.remember(rule.id, question, thumb, at, answer)
        self.metrics.answers.labels(camera.id, "reused" if answer.reused else "asked").inc()
        self.answers.decisions += 1
        alert = rule.is_alert(answer.text, answer.confidence)
        self.answers.latest[(camera.id, rule.id)] = LastAnswer(
            camera.id, answer.text, answer.confidence, alert, time.time(), answer.reused
        )
        try:
            event = await self.pipeline.handle(camera, rule, question, answer, alert, image, frame.captured_at)
        except Exception:  # the database or disk failed: say so loudly, keep watching
            log.exception("camera %s rule %s: could not record the alert event", camera.id, rule.id)
            event = None
        if event is not None:
            self.metrics.alert_events.labels(camera.id, rule.id, event.kind).inc()
        confidence = "-" if answer.confidence is None else f"{answer.confidence:.3f}"
        log.info(
            "camera=%s rule=%s answer=%r p_yes=%s alert=%s latency=%.2fs batch=%d%s",
            camera.id,
            rule.id,
            answer.text,
            confidence,
            alert,
            answer.latency_s,
            answer.batch_size,
            " reused" if answer.reused else "",
        )
        if self.on_decision is not None:
            kind_name = event.kind if event is not None else None
            self.on_decision(Decision(camera.id, rule.id, question, answer, alert, frame.seq, kind_name, frame.pts))


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
