"""The composition root of `streamwatch run`: builds every part from the settings, top-down; each part
owns its start and stop, and an AsyncExitStack stops them in the reverse order of their start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from streamwatch.alerts.pipeline import AlertPipeline, Decision
from streamwatch.clips.recorder import ClipRecorder
from streamwatch.config import CameraConfig, Settings
from streamwatch.config_watch import ConfigWatch
from streamwatch.housekeeping import (
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
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.build import build_backend, load_backend
from streamwatch.inference.engine import Engine, loaded_model
from streamwatch.inference.limits import PromptLimits
from streamwatch.inference.reload import ModelReload, ModelState
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.cameras import Cameras
from streamwatch.jobs.runner import JobRunner
from streamwatch.labelling import LabelCollector
from streamwatch.lifecycle import stopped_by_signals, wait_for_stop
from streamwatch.metrics import Metrics
from streamwatch.outputs.announce import Announcer
from streamwatch.outputs.build import build_outputs
from streamwatch.outputs.mqtt import MqttOutput
from streamwatch.outputs.topics import Topics
from streamwatch.outputs.values import AnswerValues
from streamwatch.release.shadow import CandidateShadow
from streamwatch.rules.evaluator import Evaluator
from streamwatch.rules.loader import ActiveRules, RuleSet, configured_rules
from streamwatch.rules.watch import RuleWatcher
from streamwatch.sampling import AnswerLog, Sampler, describer
from streamwatch.shadowing import ShadowRecorder
from streamwatch.shard import Shard
from streamwatch.store.db import opened_database
from streamwatch.store.discovery import DiscoveryRecord
from streamwatch.store.events import EventStore
from streamwatch.store.labels import LabelStore
from streamwatch.store.shadow import ShadowStore
from streamwatch.store.shadow_runs import ShadowRuns
from streamwatch.web.app import create_app, listen, serving
from streamwatch.web.view import Check, ServiceView

log = logging.getLogger(__name__)


class Service:
    """`streamwatch run`: cameras -> sampled frames x due rules -> shared queue -> alerts -> DB -> outputs.

    Start-up, in this order: the web port (taken before anything slow), the database (migrated), the
    rules, the model (the rules checked again in its tokens), the alert pipeline with the previous
    run's alert states, the outputs (MQTT, the event log), the queue, the cameras, the web UI, the
    loops (a sampler per camera, rules hot reload, camera status, retention, the model watchdog).
    Stopping runs it backwards: the loops, the web UI and the cameras end, the queue drains (answers
    in flight still become events), the outputs deliver what waits for a few seconds (MQTT then says
    `offline`), the model and the database close.
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
        self._cameras = Cameras(self.my_cameras)
        self.cameras: dict[str, CameraWorker] = self._cameras.workers
        self.answers = AnswerLog()
        self.started = asyncio.Event()

    async def run(self, duration_s: float | None = None, stop: asyncio.Event | None = None) -> None:
        """Run until SIGINT/SIGTERM, `stop` is set, or for `duration_s` seconds."""
        stop = stop or asyncio.Event()
        with stopped_by_signals(stop):
            async with contextlib.AsyncExitStack() as running:
                await self._start(running)
                count = f" (shard {self.shard}: {len(self.my_cameras)} of {len(self.settings.cameras)} cameras)"
                log.info("streamwatch running: %d cameras%s", len(self.cameras), count if self.shard.count > 1 else "")
                self.started.set()
                await wait_for_stop(stop, duration_s)

    async def _start(self, running: contextlib.AsyncExitStack) -> None:
        settings, web = self.settings, self.settings.web
        listener = None
        if web.enabled:  # a port that is taken fails before the slow parts
            listener = listen(settings, "web", web.host, web.port, "set [web] port to a free port, or enabled = false")
            running.callback(listener.close)
        database = await running.enter_async_context(opened_database(settings))
        store = EventStore(database, settings.path(settings.storage.snapshot_dir), owner=self.shard.name)
        rules = ActiveRules(configured_rules(settings, PromptLimits(settings.model.max_question_chars)))
        model = await running.enter_async_context(loaded_model(settings, self._backend_factory))
        metrics = Metrics(lambda: (engine.queue.stats(), self._cameras.statuses()))
        engine = Engine(settings, model, latency=metrics.inference_latency.observe)
        model_state = ModelState(model, time.time())
        metrics.watch_model(model_state.as_dict)
        rules.current = configured_rules(settings, engine.limits)  # a broken rule failed fast; now in tokens too
        for warning in rules.current.warnings:
            log.info("%s", warning)

        evaluator = Evaluator()
        topics = Topics(settings.mqtt, self.shard.name)
        announcer = Announcer(
            topics,
            cameras=self.my_cameras,
            rules=rules,
            is_open=evaluator.is_open,
            statuses=self._cameras.statuses,
            discovery=settings.mqtt.home_assistant_discovery,
            record=DiscoveryRecord(database, self.shard.name),
        )
        outputs = build_outputs(
            settings,
            database,
            owner=self.shard.name,
            announcements=announcer.messages,
            notifications=metrics.notifications,
            owns=lambda camera: self.shard.of(camera) == self.shard.index,
        )
        mqtt = next((output for output in outputs if isinstance(output, MqttOutput)), None)
        values = announcer.values = AnswerValues(topics, mqtt.publish_now) if mqtt is not None else None
        clips = ClipRecorder(store, self._cameras.packets)
        labels = LabelStore(
            database,
            store.snapshot_dir,
            max_pending=settings.labels.max_pending,
            max_labelled=settings.labels.max_labelled,
        )
        collector = LabelCollector(labels, settings.labels)
        shadow_store = ShadowStore(database)
        shadows = ShadowRecorder(shadow_store, collector)
        pipeline = AlertPipeline(store, outputs, describe=describer(engine), evaluator=evaluator, clips=clips)
        running.callback(
            lambda: log.info(
                "streamwatch stopped after %d decisions, %d alert events", self.answers.decisions, pipeline.events
            )
        )
        await pipeline.restore(rules.watched(self.my_cameras), lambda camera: self.shard.of(camera) == self.shard.index)
        for output in outputs:  # after the restore: MQTT's first announcement carries the restored states
            await running.enter_async_context(output.running())
        await running.enter_async_context(pipeline.running())  # describe follow-ups: drained after the queue
        await running.enter_async_context(clips.running())  # exits after the queue drained: its clips too
        await running.enter_async_context(engine.answering())
        factory = self._backend_factory
        candidate = CandidateShadow(
            settings,
            ShadowRuns(database, store.snapshot_dir),
            lambda s: load_backend(s, factory),
            engine.limits_problem,
        )
        await running.enter_async_context(candidate.running())  # a shadow run left running resumes
        await running.enter_async_context(self._cameras)

        jobs = JobRunner(settings, metrics, database) if settings.jobs.enabled else None
        if jobs is not None:
            await running.enter_async_context(jobs.running())  # ends a running job after the web UI stops
        loops = Loops()
        checks: dict[str, Check] = {"model": engine.watchdog.problem, "database": database.problem}
        checks["loops"] = loops.problem
        checks["shadow"] = candidate.problem
        checks |= {output.check: output.problem for output in outputs}
        degrading = {output.check for output in outputs} | {"config", "rules", "shadow"}  # watching goes on without
        view = ServiceView(
            store=store,
            cameras=self._cameras,
            my_cameras=self.my_cameras,
            rules=rules,
            answers=self.answers,
            engine=engine,
            metrics=metrics,
            checks=checks,
            degrading=degrading,
            labels=labels,
            model_state=model_state,
            jobs=jobs,
            candidate=candidate,
        )
        if listener is not None:
            await running.enter_async_context(serving(create_app(view, web), listener, web.trusted_proxies))
            log.info("web UI on http://%s:%d/ (API docs at /docs)", web.host, web.port)

        async def rules_changed(new: RuleSet) -> None:
            rules.current = new
            await pipeline.resolve_unwatched(rules.watched(self.my_cameras))  # alerts whose rule went away
            if mqtt is not None and mqtt.connected.is_set():
                for message in announcer.messages():
                    await mqtt.publish_now(message)

        await running.enter_async_context(loops)
        watcher = RuleWatcher(settings.path(settings.rules_dir), settings.cameras, rules.current, engine.limits)
        checks["rules"] = watcher.problem
        loops.start("rules-watch", RulesReload(watcher, rules_changed).step, RULES_POLL_S)
        retention = Retention(
            store, settings.storage.retention_days, int(settings.storage.max_disk_gb * 1e9), shadows=shadow_store
        )
        loops.start("retention", retention.step, RETENTION_S, first_now=True)
        loops.start("camera-status", StatusPublisher(self._cameras.statuses, mqtt).step, STATUS_CHECK_S)
        loops.start("model-watchdog", engine.watchdog.step, STATUS_CHECK_S)

        def counts() -> tuple[int, int, int]:
            return self.answers.decisions, self.answers.reused, pipeline.events

        loops.start("summary", Summary(counts, lambda: engine.queue.stats()).step, SUMMARY_S)
        if settings.model.watch_s > 0:
            reload = ModelReload(settings, engine, lambda s: load_backend(s, factory), model_state)
            if reload.paths:
                loops.start("model-reload", reload.step, settings.model.watch_s)

        def start_sampler(camera: CameraConfig) -> None:
            sampler = Sampler(
                camera,
                self.cameras[camera.id],
                rules=rules,
                engine=engine,
                pipeline=pipeline,
                answers=self.answers,
                metrics=metrics,
                on_decision=self._on_decision,
                labels=collector,
                shadows=shadows,
                values=values,
                candidate=candidate,
            )
            loops.spawn(f"sampler-{camera.id}", sampler.run)

        for camera in self.my_cameras:
            start_sampler(camera)

        async def cameras_changed(configs: list[CameraConfig]) -> None:
            """A config edit's cameras: only those added, removed or changed are started or stopped."""
            old, new = {c.id: c for c in self.my_cameras}, {c.id: c for c in self.shard.select(configs)}
            gone = [camera for camera in old if camera not in new or new[camera] != old[camera]]
            for camera in gone:
                await loops.cancel(f"sampler-{camera}")
                await self._cameras.remove(camera)
            self.my_cameras[:] = list(new.values())  # the same list the announcer and the web UI read
            for camera in [c for c in new if c not in old or new[c] != old[c]]:
                await self._cameras.add(new[camera])
                start_sampler(new[camera])
            watcher.cameras = list(configs)
            await rules_changed(rules.current)  # alerts of a removed camera resolve; MQTT announces anew
            added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
            restarted = sorted(c for c in set(new) & set(old) if new[c] != old[c])
            log.info("cameras changed: added %s, removed %s, restarted %s", added, removed, restarted)

        config_watch = ConfigWatch(settings, cameras_changed)
        checks["config"] = config_watch.problem
        loops.start("config-watch", config_watch.step, CONFIG_POLL_S)
