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
from streamwatch.change import ChangeGate, Verdict, View, view
from streamwatch.config import CameraConfig
from streamwatch.frame_history import FrameHistory, Shape
from streamwatch.inference.engine import Engine
from streamwatch.inference.types import AnswerKind, DroppedError, InferenceError
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.labelling import LabelCollector
from streamwatch.metrics import Metrics
from streamwatch.outputs.values import AnswerValues
from streamwatch.release.shadow import CandidateShadow
from streamwatch.rules.loader import ActiveRules
from streamwatch.rules.model import Rule
from streamwatch.rules.schedule import DueTracker
from streamwatch.shadowing import Decided, ShadowRecorder, with_shadows

log = logging.getLogger(__name__)

SLACK_S = 0.01  # a sample is due this much early: sleeps end a little late or early
DESCRIBE_TOKENS = 48  # a describe follow-up may answer in a sentence


@dataclass(frozen=True)
class LastAnswer:
    """A rule's latest answer on a camera, as the web UI and /api/rules show it."""

    camera: str
    answer: str
    confidence: float | None
    alert: bool
    at: float  # wall clock
    reused: bool = False  # the picture had not changed: the previous answer stood (no model pass)
    gate: str = "off"  # why the change gate reused or asked (change.Verdict.why)
    gate_area_px: float | None = None  # the largest changed patch it saw, source pixels
    gate_noise: float | None = None  # the picture noise it assumed, of 255


@dataclass
class AnswerLog:
    """The latest answer per camera x rule (the web UI shows them) and how many decisions were made."""

    latest: dict[tuple[str, str], LastAnswer] = field(default_factory=dict)
    decisions: int = 0
    reused: int = 0  # of those, answers that stood while the picture did (no model pass)


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
        labels: LabelCollector | None = None,
        shadows: ShadowRecorder | None = None,
        values: AnswerValues | None = None,
        candidate: CandidateShadow | None = None,
    ) -> None:
        self.camera, self.worker = camera, worker
        self.values = values  # count and choice answers for Home Assistant's sensors
        self.labels = labels  # uncertain answers become label requests
        self.shadows = shadows  # shadow rules' decisions are stored, never alerted
        self.candidate = candidate  # a candidate adapter in shadow: asked on the frames the live model answered
        self.rules, self.engine, self.pipeline = rules, engine, pipeline
        self.answers, self.metrics, self.on_decision = answers, metrics, on_decision
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
        """Ask `rules` about one frame (submitted together, so they share a batch) and feed each answer
        to the alert pipeline; a rule whose region did not change reuses its last answer. The frame is
        kept first for the questions over several frames (`shapes`: the camera's, when the caller has
        them at hand)."""
        if shapes is None:
            shapes = FrameHistory.shapes(self.rules.for_camera(self.camera))
        await self._remember(frame, image, shapes)
        decided = await asyncio.gather(*(self._ask(rule, frame, image) for rule in rules))
        if self.candidate is not None:
            self.candidate.offer(self.camera, image, decided, frame.captured_at)
        if self.shadows is None:
            return
        by_id = {item.rule.id: item for item in decided if item is not None}
        for item in by_id.values():
            if not item.rule.live:
                live = by_id.get(item.rule.shadows or "")
                await self.shadows.record(
                    self.camera, item, live if live and live.rule.live else None, image, frame.captured_at
                )

    async def _ask(self, rule: Rule, frame: Frame, image: Image.Image) -> Decided | None:
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
        seen, verdict = None, Verdict(None, "off")
        if area > 0 and max_reuse_s > 0:

            def judged() -> tuple[View, Verdict]:  # one trip to a thread: the view and its comparison
                now = view(region)
                return now, self.gate.judge(rule.id, question, now, at, area=area, max_reuse_s=max_reuse_s)

            seen, verdict = await asyncio.to_thread(judged)
        self.metrics.gate.labels(camera.id, verdict.why).inc()
        if verdict.compared:
            self.metrics.gate_noise.labels(camera.id, rule.id).set(verdict.noise)
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
        self.metrics.answers.labels(camera.id, "reused" if answer.reused else "asked").inc()
        self.answers.decisions += 1
        self.answers.reused += answer.reused
        alert = rule.is_alert(answer.text, answer.confidence)
        self.answers.latest[(camera.id, rule.id)] = LastAnswer(
            camera.id, answer.text, answer.confidence, alert, time.time(), answer.reused, *verdict.seen()
        )
        event = None
        if rule.live:  # a shadow rule's decision is stored by `answer`, beside the live rule's
            try:
                event = await self.pipeline.handle(
                    camera, rule, question, answer, alert, image, frame.captured_at, window
                )
            except Exception:  # the database or disk failed: say so loudly, keep watching
                log.exception("camera %s rule %s: could not record the alert event", camera.id, rule.id)
            if event is not None:
                self.metrics.alert_events.labels(camera.id, rule.id, event.kind).inc()
            if self.labels is not None:
                await self.labels.offer(camera, rule, question, answer, image, frame.captured_at, window=window)
            if self.values is not None:
                await self.values.update(camera.id, rule, answer.text)
        confidence = "-" if answer.confidence is None else f"{answer.confidence:.3f}"
        log.debug(
            "camera=%s rule=%s answer=%r p_yes=%s alert=%s latency=%.2fs batch=%d %s%s",
            camera.id,
            rule.id,
            answer.text,
            confidence,
            alert,
            answer.latency_s,
            answer.batch_size,
            verdict.describe(),
            (" reused" if answer.reused else "") + ("" if rule.live else " shadow"),
        )
        if self.on_decision is not None:
            kind_name = event.kind if event is not None else None
            self.on_decision(Decision(camera.id, rule.id, question, answer, alert, frame.seq, kind_name, frame.pts))
        return Decided(rule, question, answer, alert, window)


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
