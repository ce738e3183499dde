"""This instance's camera workers, started together and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType

from streamwatch.clips.ring import PacketRing
from streamwatch.config import CameraConfig
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.status import CameraStatus


class Cameras:
    """`async with Cameras(configs) as cameras`: every worker runs inside. At exit all are asked to stop
    first, then each is waited for (bounded by its own timeouts), so stopping N cameras takes about as
    long as the slowest one."""

    def __init__(self, configs: Sequence[CameraConfig]) -> None:
        self.workers = {camera.id: CameraWorker(camera) for camera in configs}

    async def __aenter__(self) -> Cameras:
        for worker in self.workers.values():
            worker.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for worker in self.workers.values():
            worker.request_stop()
        for worker in self.workers.values():
            await asyncio.to_thread(worker.stop)

    def statuses(self) -> list[CameraStatus]:
        """Every camera's state, rates and quality (URLs redacted)."""
        return [worker.status() for worker in self.workers.values()]

    def packets(self, camera_id: str) -> PacketRing | None:
        """The camera's clip buffer (None: no such camera here, or clips off)."""
        worker = self.workers.get(camera_id)
        return worker.packets if worker else None

    def latest(self, camera_id: str) -> Frame | None:
        worker = self.workers.get(camera_id)
        return worker.latest() if worker else None
