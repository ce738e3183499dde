"""The composition root: builds every part from the settings, starts them in order, stops in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from PIL import Image

from streamwatch.config import CameraConfig, Settings
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import Answer, AnswerKind, DroppedError, Request
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.ingest.status import CameraStatus
from streamwatch.rules.loader import RuleSet, load_rules
from streamwatch.rules.model import Rule, within_hours

log = logging.getLogger(__name__)

STATUS_LOG_S = 300.0  # how often every camera's status is logged


def build_backend(settings: Settings) -> Backend:
    """The configured model backend (loading it may take minutes for a real model)."""
    from streamwatch.inference.backends.transformers import TransformersBackend

    model = settings.model
    return TransformersBackend(
        settings.model_ref(),
        device=model.device,
        dtype=model.dtype,
        max_image_side=model.max_image_side,
        attn_implementation=model.attn_implementation,
    )


def build_queue(settings: Settings, backend: Backend) -> InferenceQueue:
    return InferenceQueue(backend, max_batch=settings.model.max_batch, max_wait_s=settings.model.max_wait_ms / 1000)


@dataclass(frozen=True)
class Decision:
    """One answered rule on one frame."""

    camera: str
    rule: str
    question: str
    answer: Answer
    alert: bool
    frame_seq: int


class Service:
    """`streamwatch run`: cameras -> sampled frames x due rules -> shared queue -> decisions."""

    def __init__(
        self,
        settings: Settings,
        *,
        backend_factory: Callable[[Settings], Backend] = build_backend,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.settings = settings
        self._backend_factory = backend_factory
        self._on_decision = on_decision
        self.rules = RuleSet()
        self.cameras: dict[str, CameraWorker] = {}
        self.queue: InferenceQueue | None = None
        self.decisions = 0

    async def run(self, duration_s: float | None = None) -> None:
        """Run until SIGINT/SIGTERM, or for `duration_s` seconds."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await self._start()
            samplers = [
                asyncio.create_task(self._sample(self.settings_camera(cid), worker), name=f"sampler-{cid}")
                for cid, worker in self.cameras.items()
            ]
            samplers.append(asyncio.create_task(self._log_status(), name="camera-status"))
            log.info("streamwatch running: %d cameras, %d rules", len(self.cameras), len(self.rules.rules))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=duration_s)
            for task in samplers:
                task.cancel()
            await asyncio.gather(*samplers, return_exceptions=True)
        finally:
            await self._stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    def camera_status(self) -> list[CameraStatus]:
        """Every camera's state, rates and quality (URLs redacted)."""
        return [worker.status() for worker in self.cameras.values()]

    async def _log_status(self, every_s: float = STATUS_LOG_S) -> None:
        while True:
            await asyncio.sleep(every_s)
            for status in self.camera_status():
                log.info(
                    "camera=%s state=%s quality=%s fps=%.1f stream_fps=%.1f decode=%s decode_ms=%.1f "
                    "reconnects_1h=%d stalls_1h=%d error=%r",
                    status.id, status.state, status.quality, status.fps, status.stream_fps, status.decode_mode,
                    status.decode_ms, status.reconnects_last_hour, status.stalls_last_hour, status.last_error,
                )  # fmt: skip

    def settings_camera(self, camera_id: str) -> CameraConfig:
        return next(c for c in self.settings.cameras if c.id == camera_id)

    async def _start(self) -> None:
        settings = self.settings
        self.rules = load_rules(settings.path(settings.rules_dir), settings.cameras)
        for warning in self.rules.warnings:
            log.info("%s", warning)
        backend = await asyncio.to_thread(self._backend_factory, settings)
        self.queue = build_queue(settings, backend)
        self.queue.start()
        for camera in settings.cameras:
            worker = CameraWorker(camera)
            self.cameras[camera.id] = worker
            worker.start()

    async def _stop(self) -> None:
        for worker in self.cameras.values():
            worker.request_stop()
        for worker in self.cameras.values():
            await asyncio.to_thread(worker.stop)
        if self.queue is not None:
            await asyncio.to_thread(self.queue.stop, drain=True)
            self.queue.backend.close()
            self.queue = None
        log.info("streamwatch stopped after %d decisions", self.decisions)

    async def _sample(self, camera: CameraConfig, worker: CameraWorker) -> None:
        """Every sample interval: the newest frame, with every rule that is due, into the queue."""
        rules = self.rules.for_camera(camera)
        next_due = {rule.id: 0.0 for rule in rules}
        last_seq = -1
        while True:
            await asyncio.sleep(camera.sample_interval_s)
            frame = worker.latest()
            if frame is None or frame.seq == last_seq:
                continue
            last_seq = frame.seq
            now = time.monotonic()
            local = datetime.now()
            due = [
                rule
                for rule in rules
                if now >= next_due[rule.id] and within_hours(rule.active_hours, local.hour * 60 + local.minute)
            ]
            for rule in due:
                next_due[rule.id] = now + (rule.sample_interval_s or camera.sample_interval_s) - 0.01
            if due:
                image = await asyncio.to_thread(frame.image)  # YUV -> RGB off the event loop, once per frame
                await asyncio.gather(*(self._ask(camera, rule, frame, image) for rule in due))

    async def _ask(self, camera: CameraConfig, rule: Rule, frame: Frame, image: Image.Image) -> None:
        assert self.queue is not None
        model = self.settings.model
        question = rule.render(camera)
        request = Request(
            image=crop_roi(image, rule.roi),
            question=question,
            kind=AnswerKind.YES_NO if rule.answer == "yes_no" else AnswerKind.GENERATE,
            source=camera.id,
            deadline=time.monotonic() + model.request_timeout_s,
            max_new_tokens=rule.max_new_tokens or model.max_new_tokens,
        )
        try:
            answer = await self.queue.ask(request)
        except (DroppedError, RuntimeError) as exc:
            log.warning("camera %s rule %s: %s", camera.id, rule.id, exc)
            return
        decision = Decision(
            camera.id, rule.id, question, answer, rule.is_alert(answer.text, answer.confidence), frame.seq
        )
        self.decisions += 1
        log.info(
            "camera=%s rule=%s answer=%r p_yes=%s alert=%s latency=%.2fs batch=%d",
            camera.id, rule.id, answer.text,
            "-" if answer.confidence is None else f"{answer.confidence:.3f}",
            decision.alert, answer.latency_s, answer.batch_size,
        )  # fmt: skip
        if self._on_decision is not None:
            self._on_decision(decision)
