"""The composition root: builds every part from the settings, starts them in order, stops in reverse."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PIL import Image

from streamwatch.alerts.mqtt import MqttPublisher
from streamwatch.alerts.pipeline import AlertPipeline, Decision
from streamwatch.alerts.topics import Topics
from streamwatch.config import CameraConfig, Settings
from streamwatch.housekeeping import (
    RETENTION_S,
    RULES_POLL_S,
    STATUS_CHECK_S,
    Loops,
    Retention,
    RulesReload,
    StatusPublisher,
)
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.build import build_backend, build_queue, load_backend
from streamwatch.inference.limits import PromptLimits
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import Answer, AnswerKind, DroppedError, InferenceError, Request
from streamwatch.inference.watchdog import ModelWatchdog
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.ingest.status import CameraStatus
from streamwatch.lifecycle import stopped_by_signals, wait_for_stop
from streamwatch.metrics import Metrics
from streamwatch.rules.loader import RuleSet, configured_rules
from streamwatch.rules.model import Rule
from streamwatch.rules.schedule import DueTracker
from streamwatch.rules.watch import RuleWatcher
from streamwatch.shard import Shard
from streamwatch.store.db import open_database
from streamwatch.store.events import EventStore, Message
from streamwatch.store.outbox import Outbox
from streamwatch.web.app import listen, start_server, stop_server
from streamwatch.web.context import LastAnswer, RuleView

log = logging.getLogger(__name__)


class Service:
    """`streamwatch run`: cameras -> sampled frames x due rules -> shared queue -> alerts -> DB + MQTT.

    Start order: database (migrated), rules, model (rules checked again against its tokenizer), queue,
    alert states of the previous run, MQTT, web, cameras, samplers and housekeeping. Stop order is the
    reverse: loops and samplers, cameras, queue (drained, so answers in flight still become events),
    MQTT (outbox drained for a few seconds, then `offline`), database.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        backend_factory: Callable[[Settings], Backend] = build_backend,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.settings = settings
        self.shard = Shard.parse(settings.shard)
        self.my_cameras = self.shard.select(settings.cameras)  # all of them unless sharded
        self._backend_factory = backend_factory
        self._on_decision = on_decision
        self.rules = RuleSet()
        self.limits = PromptLimits(settings.model.max_question_chars)
        self.cameras: dict[str, CameraWorker] = {}
        self.queue: InferenceQueue | None = None
        self.watchdog: ModelWatchdog | None = None
        self._store: EventStore | None = None
        self.publisher: MqttPublisher | None = None
        self.pipeline: AlertPipeline | None = None
        self.loops = Loops()
        self.decisions = 0
        self.metrics = Metrics(lambda: (self.queue.stats() if self.queue else None, self.camera_status()))
        self.last_answers: dict[tuple[str, str], LastAnswer] = {}
        self._web: Any = None
        self._web_task: asyncio.Task[None] | None = None
        self._publisher_task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    async def run(self, duration_s: float | None = None, stop: asyncio.Event | None = None) -> None:
        """Run until SIGINT/SIGTERM, `stop` is set, or for `duration_s` seconds."""
        stop = stop or asyncio.Event()
        with stopped_by_signals(stop):
            try:
                await self._start()
                log.info(
                    "streamwatch running: %d cameras, %d rules%s",
                    len(self.cameras),
                    len(self.rules.rules),
                    f" (shard {self.shard}: {len(self.my_cameras)} of {len(self.settings.cameras)} cameras)"
                    if self.shard.count > 1
                    else "",
                )
                self.started.set()
                await wait_for_stop(stop, duration_s)
            finally:
                await self._stop()

    def camera_status(self) -> list[CameraStatus]:
        """Every camera's state, rates and quality (URLs redacted)."""
        return [worker.status() for worker in self.cameras.values()]

    def settings_camera(self, camera_id: str) -> CameraConfig:
        return next(c for c in self.settings.cameras if c.id == camera_id)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def _start(self) -> None:
        settings, model = self.settings, self.settings.model
        listener = self._bind_web() if settings.web.enabled else None  # a taken port fails before the slow parts
        database = await asyncio.to_thread(open_database, settings)
        self._store = store = EventStore(database, settings.path(settings.storage.snapshot_dir), owner=self.shard.name)
        configured_rules(settings, self.limits)  # a broken rule file fails before the model loads
        backend = await asyncio.to_thread(load_backend, settings, self._backend_factory)
        self.limits = backend.prompt_limits(
            max_chars=model.max_question_chars,
            max_tokens=model.max_question_tokens,
            max_new_tokens=model.max_new_tokens,
        )
        self.rules = configured_rules(settings, self.limits)  # and now in the model's tokens
        for warning in self.rules.warnings:
            log.info("%s", warning)
        self.queue = build_queue(settings, backend)
        self.queue.start()
        self.watchdog = ModelWatchdog(self.queue, model.stall_timeout_s)
        topics = Topics(settings.mqtt, self.shard.name) if settings.mqtt.enabled else None
        if settings.mqtt.enabled:
            self.publisher = MqttPublisher(
                settings.mqtt,
                Outbox(database, owner=self.shard.name),
                on_connect=self._announcements,
                instance=self.shard.name,
            )
        self.pipeline = AlertPipeline(
            store, topics, describe=self._describe, notify=self.publisher.notify if self.publisher else (lambda: None)
        )
        await self.pipeline.restore(self.watched(), lambda camera: self.shard.of(camera) == self.shard.index)
        if self.publisher is not None:  # after the restore: the first announcement carries the restored states
            self._publisher_task = asyncio.create_task(self.publisher.run(), name="mqtt")
        if listener is not None:
            await self._start_web(listener)
        for camera in self.my_cameras:
            worker = CameraWorker(camera)
            self.cameras[camera.id] = worker
            worker.start()
        watcher = RuleWatcher(settings.path(settings.rules_dir), settings.cameras, self.rules, self.limits)
        self.loops.start("rules-watch", RulesReload(watcher, self._rules_changed).step, RULES_POLL_S)
        self.loops.start(
            "retention", Retention(store, settings.storage.retention_days).step, RETENTION_S, first_now=True
        )
        self.loops.start(
            "camera-status", StatusPublisher(self.camera_status, self.publisher, topics).step, STATUS_CHECK_S
        )
        self.loops.start("model-watchdog", self.watchdog.step, STATUS_CHECK_S)
        for camera_id, worker in self.cameras.items():
            self.loops.spawn(
                f"sampler-{camera_id}", functools.partial(self._sample, self.settings_camera(camera_id), worker)
            )

    def _bind_web(self) -> socket.socket:
        web = self.settings.web
        return listen(self.settings, "web", web.host, web.port, "set [web] port to a free port, or enabled = false")

    async def _start_web(self, listener: socket.socket) -> None:
        from streamwatch.web.app import create_app

        web = self.settings.web
        self._web, self._web_task = await start_server(create_app(self, web), listener)
        log.info("web UI on http://%s:%d/ (API docs at /docs)", web.host, web.port)

    async def _stop(self) -> None:
        if self._web is not None and self._web_task is not None:
            await stop_server(self._web, self._web_task)
        await self.loops.stop()
        for worker in self.cameras.values():
            worker.request_stop()
        for worker in self.cameras.values():
            await asyncio.to_thread(worker.stop)
        if self.queue is not None:  # a model call stuck past the requests' deadline is left behind, unclosed
            drain_s = self.settings.model.request_timeout_s + 5
            if await asyncio.to_thread(self.queue.stop, drain=True, timeout=drain_s):
                self.queue.backend.close()
            self.queue = None
        if self.publisher is not None and self._publisher_task is not None:
            await self.publisher.stop(self._publisher_task)
        if self._store is not None:
            self._store.db.close()
        events = self.pipeline.events if self.pipeline else 0
        log.info("streamwatch stopped after %d decisions, %d alert events", self.decisions, events)

    # -- rules and MQTT ------------------------------------------------------------------------------
    def watched(self) -> set[tuple[str, str]]:
        """Every (camera, rule) this instance watches now: its enabled cameras x the rules that apply."""
        return {(c.id, r.id) for c in self.my_cameras if c.enabled for r in self.rules.for_camera(c)}

    async def _rules_changed(self, rules: RuleSet) -> None:
        self.rules = rules
        if self.pipeline is not None:
            await self.pipeline.resolve_unwatched(self.watched())
        if self.publisher is not None and self.publisher.connected.is_set():
            for message in self._announcements():
                await self.publisher.publish_now(message)

    def _announcements(self) -> list[Message]:
        """Published on every (re)connect: HA discovery, current alert states, camera status."""
        if self.pipeline is None or self.pipeline.topics is None:
            return []
        is_open = self.pipeline.evaluator.is_open
        pairs = [(c, r, is_open(c.id, r.id)) for c in self.my_cameras for r in self.rules.for_camera(c)]
        discovery = self.settings.mqtt.home_assistant_discovery
        return self.pipeline.topics.announcements(pairs, self.camera_status(), discovery=discovery)

    # -- sampling and answering ----------------------------------------------------------------------
    async def _sample(self, camera: CameraConfig, worker: CameraWorker) -> None:
        """Every sample interval: the newest frame, with every rule that is due, into the queue. A
        frame that cannot be used is logged and skipped: the loop never ends on one frame."""
        tracker = DueTracker(camera.sample_interval_s)
        last_seq = -1
        while True:
            await asyncio.sleep(camera.sample_interval_s)
            frame = worker.latest()
            if frame is None or frame.seq == last_seq:
                continue
            last_seq = frame.seq
            try:
                await self._sample_frame(camera, tracker, frame)
            except Exception:
                log.exception("camera %s: frame %d could not be sampled; going on with the next", camera.id, frame.seq)

    async def _sample_frame(self, camera: CameraConfig, tracker: DueTracker, frame: Frame) -> None:
        self.metrics.sample_age.observe(max(0.0, time.time() - frame.captured_at))
        due = tracker.due(self.rules.for_camera(camera), time.monotonic(), datetime.now().astimezone())
        if due:
            image = await asyncio.to_thread(frame.image)  # YUV -> RGB off the event loop, once per frame
            await asyncio.gather(*(self._ask(camera, rule, frame, image) for rule in due))

    async def _query(self, source: str, question: str, image: Image.Image, kind: AnswerKind, tokens: int) -> Answer:
        """Every model request (rules, describe, web/API) goes through here and the shared queue."""
        if self.queue is None:
            raise DroppedError("starting")
        request = Request(
            image=image,
            question=question,
            kind=kind,
            source=source,
            deadline=time.monotonic() + self.settings.model.request_timeout_s,
            max_new_tokens=tokens,
        )
        answer = await self.queue.ask(request)
        self.metrics.inference_latency.observe(answer.latency_s)
        return answer

    async def _ask(self, camera: CameraConfig, rule: Rule, frame: Frame, image: Image.Image) -> None:
        assert self.pipeline is not None
        question = rule.render(camera)
        kind = AnswerKind.YES_NO if rule.answer == "yes_no" else AnswerKind.GENERATE
        tokens = rule.max_new_tokens or self.settings.model.max_new_tokens
        try:
            answer = await self._query(camera.id, question, crop_roi(image, rule.roi), kind, tokens)
        except (DroppedError, InferenceError) as exc:
            log.warning("camera %s rule %s: %s", camera.id, rule.id, exc)
            return
        self.decisions += 1
        alert = rule.is_alert(answer.text, answer.confidence)
        self.last_answers[(camera.id, rule.id)] = LastAnswer(
            camera.id, answer.text, answer.confidence, alert, time.time()
        )
        try:
            event = await self.pipeline.handle(camera, rule, question, answer, alert, image, frame.captured_at)
        except Exception:  # the database or disk failed: say so loudly, keep watching
            log.exception("camera %s rule %s: could not record the alert event", camera.id, rule.id)
            event = None
        if event is not None:
            self.metrics.alert_events.labels(camera.id, rule.id, event.kind).inc()
        log.info(
            "camera=%s rule=%s answer=%r p_yes=%s alert=%s latency=%.2fs batch=%d",
            camera.id,
            rule.id,
            answer.text,
            "-" if answer.confidence is None else f"{answer.confidence:.3f}",
            alert,
            answer.latency_s,
            answer.batch_size,
        )
        if self._on_decision is not None:
            kind_name = event.kind if event is not None else None
            self._on_decision(Decision(camera.id, rule.id, question, answer, alert, frame.seq, kind_name, frame.pts))

    async def _describe(self, camera: CameraConfig, rule: Rule, image: Image.Image) -> str | None:
        """The rule's follow-up question, asked once when an alert opens; its answer goes in the event."""
        assert rule.describe is not None
        question = rule.render(camera, rule.describe)
        tokens = max(48, rule.max_new_tokens or 0)
        try:
            return (await self._query(camera.id, question, crop_roi(image, rule.roi), AnswerKind.GENERATE, tokens)).text
        except (DroppedError, InferenceError) as exc:
            log.warning("camera %s rule %s: describe failed: %s", camera.id, rule.id, exc)
            return None

    # -- what the web UI and API read (streamwatch.web.context.WebContext) ---------------------------
    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise RuntimeError("the service has not started")
        return self._store

    def latest_frame(self, camera_id: str) -> Frame | None:
        worker = self.cameras.get(camera_id)
        return worker.latest() if worker else None

    def rule_views(self) -> list[RuleView]:
        views = []
        for rule in self.rules.rules:
            cameras = [c.id for c in self.my_cameras if rule.applies_to(c)]
            answers = [self.last_answers[(c, rule.id)] for c in cameras if (c, rule.id) in self.last_answers]
            views.append(
                RuleView(
                    rule.id,
                    rule.title,
                    rule.severity,
                    rule.answer,
                    rule.question,
                    cameras,
                    rule.enabled,
                    rule.help,
                    answers,
                )
            )
        return views

    async def ask(self, image: Image.Image, question: str, kind: AnswerKind) -> Answer:
        """A one-off question (web/API) through the same shared queue as the cameras."""
        return await self._query("api", question, image, kind, self.settings.model.max_new_tokens)

    def question_problem(self, question: str) -> str | None:
        return self.limits.problem(question)

    def readiness(self) -> dict[str, str | None]:
        """What works now, each None when it does or the reason when it does not: the model answering
        within model.stall_timeout_s, the database writable, the broker connected (with MQTT on), every
        background loop running."""
        checks: dict[str, str | None] = {"model": "starting" if self.watchdog is None else self.watchdog.problem()}
        database = self._store.db.problem() if self._store is not None else "starting"
        checks["database"] = database
        if self.settings.mqtt.enabled:
            publisher = self.publisher
            connected = publisher is not None and publisher.connected.is_set()
            checks["broker"] = (
                None
                if connected
                else (
                    f"not connected to {self.settings.mqtt.host}:{self.settings.mqtt.port}"
                    + (f": {publisher.last_error}" if publisher is not None else "")
                )
            )
        failures = "; ".join(f"{name}: {why}" for name, why in self.loops.failures.items())
        checks["loops"] = failures or None
        return checks
