"""A service-shaped context for the web app: events in SQLite, one camera worker on the sample clip, the
real queue on a backend double whose P(yes) is the image's brightness."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from PIL import Image

from streamwatch.config import CameraConfig
from streamwatch.inference.backends.base import Backend, YesNo
from streamwatch.inference.limits import PromptLimits
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import Answer, AnswerKind, Prompt, Request
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.status import CameraStatus
from streamwatch.learning.jobs.runner import JobRunner
from streamwatch.learning.release.shadow import CandidateShadow
from streamwatch.metrics import Metrics
from streamwatch.pipeline.answer_log import LastAnswer
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore
from streamwatch.store.labels import LabelStore
from streamwatch.web.app import bind, serve
from streamwatch.web.context import RuleView
from support.events import new_event
from support.helpers import REPO, free_port


class BrightnessBackend(Backend):
    """P(yes) = mean brightness of the image; generation echoes the question."""

    name = "brightness"

    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        return [YesNo(float(np.asarray(p.image.convert("L")).mean()) / 255) for p in prompts]

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        return [f"you asked: {p.question}" for p in prompts]


class Site:
    """A service-shaped context: events in SQLite, one camera worker on the sample clip, the real queue."""

    def __init__(self, folder: Path) -> None:
        database = Database.open(f"sqlite:///{folder / 'events.db'}")
        self.store = EventStore(database, folder / "snapshots")
        self.labels = LabelStore(database, folder / "snapshots", max_pending=50, max_labelled=50)
        self.queue = InferenceQueue(BrightnessBackend(), max_batch=4, max_wait_s=0.01)
        self.queue.start()
        self.worker = CameraWorker(CameraConfig(id="yard", url=str(REPO / "samples" / "yard.mp4"), name="Yard"))
        self.worker.start()
        self.metrics = Metrics(self.camera_status)
        self.metrics.watch_queue(self.queue.stats)
        self.jobs: JobRunner | None = None  # test_jobs runs real ones
        self.candidate: CandidateShadow | None = None  # test_shadow_candidate runs a real one

    def camera_status(self) -> list[CameraStatus]:
        return [self.worker.status()]

    def latest_frame(self, camera_id: str) -> Frame | None:
        return self.worker.latest() if camera_id == "yard" else None

    def rule_views(self) -> list[RuleView]:
        last = LastAnswer("yard", "no", 0.12, False, time.time())
        return [
            RuleView(
                "fence-climb",
                "Fence climbing",
                "critical",
                "yes_no",
                "Climbing at {location}?",
                ["yard"],
                True,
                "help text",
                [last],
            )
        ]

    async def ask(self, image: Image.Image, question: str, kind: AnswerKind) -> Answer:
        return await self.queue.ask(Request(image, question, kind, source="api"))

    def image_side(self) -> int:
        return 1280

    def question_problem(self, question: str) -> str | None:
        return PromptLimits(max_chars=200).problem(question)

    def readiness(self) -> dict[str, str | None]:
        return {"model": None, "database": None}

    def degrading(self) -> frozenset[str]:
        return frozenset()

    def model_status(self) -> dict[str, Any]:
        return {"id": self.queue.backend.name, "adapter": None, "reload_error": None}

    def close(self) -> None:
        self.worker.stop()
        self.queue.stop()


def add_event(
    store: EventStore,
    uid: str,
    *,
    camera: str = "yard",
    rule: str = "fence-climb",
    kind: str = "open",
    severity: str = "critical",
    snapshot: bytes | None = None,
) -> None:
    fields = {"confidence": 0.91, "latency_s": 0.2, "model": "m"}
    store.record(new_event(uid, camera=camera, rule=rule, kind=kind, severity=severity, **fields), snapshot)


def jpeg_bytes(color: tuple[int, int, int] = (200, 200, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), color).save(buffer, format="JPEG")
    return buffer.getvalue()


class LiveServer:
    """The app on a real uvicorn socket in a thread of its own, as the service runs it."""

    def __init__(self, app: FastAPI, trusted_proxies: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.trusted_proxies = trusted_proxies
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(app,), daemon=True)
        self.thread.start()
        assert self.ready.wait(20)

    def _run(self, app: FastAPI) -> None:
        async def main() -> None:
            self.server, task = await serve(app, bind("127.0.0.1", self.port), self.trusted_proxies)
            self.ready.set()
            await task

        self.loop.run_until_complete(main())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)

    def raw(self, head: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send a request head (and maybe a start of a body) and read the status line and body; the
        server must answer without waiting for the rest of a body it was told about."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as connection:
            connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
            data = b""
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
        return int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0
