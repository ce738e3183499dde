"""One thread per camera: decode with PyAV, keep only the newest frame, reconnect with backoff."""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

from streamwatch.config import CameraConfig
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.sources import (
    SourceError,
    decode_video,
    image_files,
    is_network,
    local_path,
    open_container,
    read_image,
)

log = logging.getLogger(__name__)


class CameraWorker:
    """Keeps the latest decoded frame of one camera. A slow consumer never builds a backlog."""

    def __init__(
        self,
        camera: CameraConfig,
        *,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.camera = camera
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.status = "disabled" if not camera.enabled else "starting"
        self.last_error = ""
        self.reconnects = 0
        self._latest: Frame | None = None
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.camera.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera.id}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def latest(self) -> Frame | None:
        with self._lock:
            return self._latest

    # -- worker thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self.backoff_initial_s
        url = self.camera.url
        while not self._stop.is_set():
            try:
                delivered = self._read_images(local_path(url)) if self._is_folder() else self._read_video()
                if self._stop.is_set():
                    break
                if not is_network(url):
                    if not self.camera.loop:
                        log.info("camera %s: end of %s", self.camera.id, url)
                        self.status = "offline"
                        return
                    if delivered:
                        continue  # play the file again
                    raise SourceError(f"{url}: no frames")
                if delivered:
                    backoff = self.backoff_initial_s
                self._went_offline("stream ended")
            except SourceError as exc:
                self._went_offline(str(exc))
            except Exception as exc:  # a camera must never take the service down
                log.exception("camera %s: unexpected error", self.camera.id)
                self._went_offline(f"unexpected error: {type(exc).__name__}")
            delay = backoff * random.uniform(0.8, 1.2)
            backoff = min(self.backoff_max_s, backoff * 2)
            self.reconnects += 1
            self._stop.wait(delay)

    def _went_offline(self, reason: str) -> None:
        if self.status != "offline" or reason != self.last_error:
            log.warning("camera %s offline: %s", self.camera.id, reason)
        self.status = "offline"
        self.last_error = reason

    def _is_folder(self) -> bool:
        return not is_network(self.camera.url) and local_path(self.camera.url).is_dir()

    def _publish(self, array: object, pts: float | None, keyframe: bool) -> None:
        frame = Frame(self.camera.id, self._seq, time.time(), array, pts, keyframe)  # type: ignore[arg-type]
        self._seq += 1
        with self._lock:
            self._latest = frame
        if self.status != "online":
            log.info("camera %s online (%dx%d)", self.camera.id, *frame.size)
            self.status = "online"
            self.last_error = ""

    def _read_video(self) -> bool:
        """Decode until the stream ends or fails; files are paced to real time."""
        delivered = False
        with open_container(
            self.camera.url,
            transport=self.camera.transport,
            open_timeout_s=self.open_timeout_s,
            read_timeout_s=self.read_timeout_s,
        ) as container:
            paced = not is_network(self.camera.url)
            started = time.monotonic()
            first_pts: float | None = None
            for frame in decode_video(container, self.camera.url):
                if self._stop.is_set():
                    break
                pts = float(frame.time) if frame.time is not None else None
                if paced and pts is not None:
                    first_pts = pts if first_pts is None else first_pts
                    wait = (pts - first_pts) - (time.monotonic() - started)
                    if wait > 0 and self._stop.wait(wait):
                        break
                self._publish(frame.to_ndarray(format="rgb24"), pts, bool(frame.key_frame))
                delivered = True
        return delivered

    def _read_images(self, folder: Path) -> bool:
        """An image folder is a slow camera: one image per sample interval."""
        files = image_files(folder)
        if not files:
            raise SourceError(f"{folder}: folder has no images")
        for path in files:
            if self._stop.is_set():
                break
            self._publish(read_image(path), None, True)
            if self._stop.wait(self.camera.sample_interval_s):
                break
        return True
