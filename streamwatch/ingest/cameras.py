"""This instance's cameras and their workers, started together and stopped together; one added or removed while
running (a config edit) starts or stops on its own."""

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

    def configs(self) -> list[CameraConfig]:
        """The cameras watched now, in the order they were added (a copy: the set changes only here)."""
        return [worker.camera for worker in self.workers.values()]

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

    async def add(self, config: CameraConfig) -> CameraWorker:
        """A camera added while running: its worker starts at once."""
        worker = self.workers[config.id] = CameraWorker(config)
        worker.start()
        return worker

    async def remove(self, camera_id: str) -> None:
        """A camera removed (or about to be replaced) while running: its worker is stopped."""
        worker = self.workers.pop(camera_id, None)
        if worker is not None:
            worker.request_stop()
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
