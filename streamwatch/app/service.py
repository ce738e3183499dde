"""The composition root of `streamwatch run`: builds every part from the settings, top-down; each part
owns its start and stop, and an AsyncExitStack stops them in the reverse order of their start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from streamwatch.alerts.recorder import AlertPipeline
from streamwatch.alerts.states import Evaluator
from streamwatch.app.config_watch import ConfigWatch
from streamwatch.app.housekeeping import (
    CONFIG_POLL_S,
    RETENTION_S,
    RULES_POLL_S,
    STATUS_CHECK_S,
    SUMMARY_S,
    Loops,
    Retention,
    RulesReload,
    StatusPublisher,
    Summary,
)
from streamwatch.app.lifecycle import stopped_by_signals, wait_for_stop
from streamwatch.app.live import Loop, Reconfiguration, Samplers
from streamwatch.clips.recorder import ClipRecorder
from streamwatch.config import CameraConfig, Settings
from streamwatch.config.shard import Shard
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.build import build_backend, load_backend
from streamwatch.inference.engine import Engine, Model, loaded_model
from streamwatch.inference.limits import PromptLimits
from streamwatch.inference.reload import ModelReload, ModelState
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.cameras import Cameras
from streamwatch.learning.jobs.runner import JobRunner
from streamwatch.learning.labels import LabelCollector
from streamwatch.learning.release.shadow import CandidateShadow
from streamwatch.learning.shadow_rules import ShadowRecorder
from streamwatch.metrics import Metrics
from streamwatch.outputs.base import Output
from streamwatch.outputs.build import build_outputs
from streamwatch.outputs.mqtt.announce import Announcer
from streamwatch.outputs.mqtt.client import MqttOutput
from streamwatch.outputs.mqtt.topics import Topics
from streamwatch.outputs.mqtt.values import AnswerValues, PublishedValues
from streamwatch.pipeline.answer_log import AnswerLog
from streamwatch.pipeline.decision import DecisionSink, Sinks
from streamwatch.pipeline.sampling import Sampler, describer
from streamwatch.rules.loader import ActiveRules, configured_rules
from streamwatch.rules.watch import RuleWatcher
from streamwatch.store.db import Database, opened_database
from streamwatch.store.discovery import DiscoveryRecord
from streamwatch.store.events import EventStore
from streamwatch.store.labels import LabelStore
from streamwatch.store.shadow import ShadowStore
from streamwatch.store.shadow_runs import ShadowRuns
from streamwatch.web.app import create_app, listen, serving
from streamwatch.web.view import Check, ServiceView

log = logging.getLogger(__name__)


class Service:
    """`streamwatch run`: cameras -> sampled frames x due rules -> shared queue -> decisions -> sinks
    (alerts -> DB -> outputs, the latest answers, metrics, label requests, values, shadow records).

    Start-up, in this order: the web port (taken before anything slow), the database (migrated), the
    rules, the model (the rules checked again in its tokens), the alert pipeline with the previous
    run's alert states, the outputs (MQTT, the event log), the queue, the cameras, the web UI, the
    loops (a sampler per camera, rules and config hot reload, camera status, retention, the model
    watchdog). Stopping runs it backwards: the loops, the web UI and the cameras end, the queue drains
    (answers in flight still become events), the outputs deliver what waits for a few seconds (MQTT
    then says `offline`), the model and the database close. This class only builds and enters parts:
    what they do lives in them (live reconfiguration: streamwatch/app/live.py).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        backend_factory: Callable[[Settings], Backend] = build_backend,
        sinks: Sequence[DecisionSink] = (),
    ) -> None:
        self.settings = settings
        self.shard = Shard.parse(settings.shard)
        self.my_cameras = self.shard.select(settings.cameras)  # at start; all of them unless sharded
        self._backend_factory = backend_factory
        self._sinks = tuple(sinks)  # more decision sinks (tests and benchmarks watch the decisions)
        self.cameras = Cameras(self.my_cameras)
        self.answers = AnswerLog()
        self.started = asyncio.Event()

    async def run(self, duration_s: float | None = None, stop: asyncio.Event | None = None) -> None:
        """Run until SIGINT/SIGTERM, `stop` is set, or for `duration_s` seconds."""
        stop = stop or asyncio.Event()
        with stopped_by_signals(stop):
            async with contextlib.AsyncExitStack() as running:
                await self._start(running)
                count = f" (shard {self.shard}: {len(self.my_cameras)} of {len(self.settings.cameras)} cameras)"
                log.info(
                    "streamwatch running: %d cameras%s", len(self.my_cameras), count if self.shard.count > 1 else ""
                )
                self.started.set()
                await wait_for_stop(stop, duration_s)

    async def _start(self, running: contextlib.AsyncExitStack) -> None:
        settings, web, cameras, shard = self.settings, self.settings.web, self.cameras, self.shard
        listener = None
        if web.enabled:  # a port that is taken fails before the slow parts
            listener = listen(settings, "web", web.host, web.port, "set [web] port to a free port, or enabled = false")
            running.callback(listener.close)
        database = await running.enter_async_context(opened_database(settings))
        configured_rules(settings, PromptLimits(settings.model.max_question_chars))  # a broken rule fails fast
        model = await running.enter_async_context(loaded_model(settings, self._backend_factory))
        built = _build(settings, shard, database, model, self._backend_factory, cameras, self.answers, self._sinks)
        pipeline, outputs = built.pipeline, built.outputs
        running.callback(
            lambda: log.info(
                "streamwatch stopped after %d decisions, %d alert events", self.answers.decisions, pipeline.events
            )
        )
        await pipeline.restore(built.rules.watched(self.my_cameras), shard.owns)
        for output in outputs:  # after the restore: MQTT's first announcement carries the restored states
            await running.enter_async_context(output.running())
        await running.enter_async_context(pipeline.running())  # describe follow-ups: drained after the queue
        await running.enter_async_context(built.clips.running())  # exits after the queue drained: its clips too
        await running.enter_async_context(built.engine.answering())
        await running.enter_async_context(built.candidate.running())  # a shadow run left running resumes
        await running.enter_async_context(cameras)
        if built.jobs is not None:
            await running.enter_async_context(built.jobs.running())  # ends a running job after the web UI stops
        if listener is not None:
            app = create_app(built.view, web)
            await running.enter_async_context(serving(app, listener, web.trusted_proxies))
            log.info("web UI on http://%s:%d/ (API docs at /docs)", web.host, web.port)
        await running.enter_async_context(built.loops)
        built.start_loops()


@dataclass(frozen=True)
class Periodic:
    """A loop that calls `step` every `every_s` seconds (first at once with `first_now`)."""

    name: str
    step: Callable[[], Awaitable[None]]
    every_s: float
    first_now: bool = False


@dataclass(frozen=True)
class Parts:
    """Everything `streamwatch run` is made of, built and not yet started."""

    rules: ActiveRules
    engine: Engine
    pipeline: AlertPipeline
    outputs: list[Output]
    clips: ClipRecorder
    candidate: CandidateShadow
    jobs: JobRunner | None
    view: ServiceView
    loops: Loops
    periodic: list[Periodic]
    live: Reconfiguration

    def start_loops(self) -> None:
        """The periodic loops, then a sampler per camera (inside `loops`, which stops them all)."""
        for loop in self.periodic:
            self.loops.start(loop.name, loop.step, loop.every_s, first_now=loop.first_now)
        self.live.start()


def _build(
    settings: Settings,
    shard: Shard,
    database: Database,
    model: Model,
    backend_factory: Callable[[Settings], Backend],
    cameras: Cameras,
    answers: AnswerLog,
    more_sinks: Sequence[DecisionSink],
) -> Parts:
    store = EventStore(database, settings.path(settings.storage.snapshot_dir), owner=shard.name)
    metrics = Metrics(cameras.statuses)
    engine = Engine(settings, model, latency=metrics.inference_latency.observe)
    metrics.watch_queue(engine.queue.stats)
    model_state = ModelState(model, time.time())
    metrics.watch_model(model_state.as_dict)
    rules = ActiveRules(configured_rules(settings, engine.limits))  # checked in the model's tokens too
    for warning in rules.current.warnings:
        log.info("%s", warning)

    evaluator = Evaluator()
    topics = Topics(settings.mqtt, shard.name)
    values = AnswerValues(topics)
    announcer = Announcer(
        topics,
        cameras=cameras.configs,
        rules=rules,
        is_open=evaluator.is_open,
        statuses=cameras.statuses,
        discovery=settings.mqtt.home_assistant_discovery,
        record=DiscoveryRecord(database, shard.name),
        values=values,
    )
    outputs = build_outputs(
        settings,
        database,
        owner=shard.name,
        announcements=announcer.messages,
        notifications=metrics.notifications,
        owns=shard.owns,
    )
    mqtt = next((output for output in outputs if isinstance(output, MqttOutput)), None)
    clips = ClipRecorder(store, cameras.packets)
    labels = LabelStore(
        database, store.snapshot_dir, max_pending=settings.labels.max_pending, max_labelled=settings.labels.max_labelled
    )
    collector = LabelCollector(labels, settings.labels)
    shadow_store = ShadowStore(database)
    pipeline = AlertPipeline(store, outputs, describe=describer(engine), evaluator=evaluator, clips=clips)
    candidate = CandidateShadow(
        settings,
        ShadowRuns(database, store.snapshot_dir),
        lambda s: load_backend(s, backend_factory),
        engine.limits_problem,
    )
    published = [PublishedValues(values, mqtt.publish_now)] if mqtt is not None else []
    sinks = Sinks(
        [answers, metrics, collector, *published, ShadowRecorder(shadow_store, collector), candidate, *more_sinks],
        transitions=pipeline.transitions,
    )
    loops = Loops()

    def sampler(camera: CameraConfig, worker: CameraWorker) -> Loop:
        return Sampler(camera, worker, rules=rules, engine=engine, sinks=sinks, metrics=metrics).run

    rules_watch = RuleWatcher(settings.path(settings.rules_dir), settings.cameras, rules.current, engine.limits)
    live = Reconfiguration(
        shard=shard,
        cameras=cameras,
        samplers=Samplers(loops, sampler),
        rules=rules,
        rules_watch=rules_watch,
        resolve_unwatched=pipeline.resolve_unwatched,
        announce=mqtt.announce if mqtt is not None else _nothing,
    )
    config_watch = ConfigWatch(settings, live.cameras_changed)
    retention = Retention(
        store, settings.storage.retention_days, int(settings.storage.max_disk_gb * 1e9), shadows=shadow_store
    )

    def counts() -> tuple[int, int, int]:
        return answers.decisions, answers.reused, pipeline.events

    periodic = [
        Periodic("rules-watch", RulesReload(rules_watch, live.rules_changed).step, RULES_POLL_S),
        Periodic("config-watch", config_watch.step, CONFIG_POLL_S),
        Periodic("retention", retention.step, RETENTION_S, first_now=True),
        Periodic("camera-status", StatusPublisher(cameras.statuses, mqtt).step, STATUS_CHECK_S),
        Periodic("model-watchdog", engine.watchdog.step, STATUS_CHECK_S),
        Periodic("summary", Summary(counts, engine.queue.stats).step, SUMMARY_S),
    ]
    reload = ModelReload(settings, engine, lambda s: load_backend(s, backend_factory), model_state)
    if settings.model.watch_s > 0 and reload.paths:
        periodic.append(Periodic("model-reload", reload.step, settings.model.watch_s))
    jobs = None
    if settings.jobs.enabled:  # a release job's adapter goes to the model directly (watched or not)
        jobs = JobRunner(settings, metrics, database, load_adapter=reload.now if reload.paths else None)
    checks: dict[str, Check] = {
        "model": engine.watchdog.problem,
        "database": database.problem,
        "loops": loops.problem,
        "shadow": candidate.problem,
        "rules": rules_watch.problem,
        "config": config_watch.problem,
    }
    checks |= {output.check: output.problem for output in outputs}
    view = ServiceView(
        store=store,
        cameras=cameras,
        rules=rules,
        answers=answers,
        engine=engine,
        metrics=metrics,
        checks=checks,
        degrading={output.check for output in outputs} | {"config", "rules", "shadow"},  # watching goes on
        labels=labels,
        model_state=model_state,
        jobs=jobs,
        candidate=candidate,
    )
    return Parts(rules, engine, pipeline, outputs, clips, candidate, jobs, view, loops, periodic, live)


async def _nothing() -> None:
    return None
