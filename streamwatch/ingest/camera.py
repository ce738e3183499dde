"""One thread per camera: decode with PyAV, keep only the newest frame, always come back."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from pathlib import Path

import av
import numpy as np

from streamwatch.clips.ring import PacketRing
from streamwatch.config import CameraConfig
from streamwatch.errors import SourceError, StallError
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.images import MAX_IMAGE_PIXELS
from streamwatch.ingest.sources import image_files, is_network, local_path, read_image
from streamwatch.ingest.status import CameraStats, CameraStatus
from streamwatch.ingest.stream import VideoStream
from streamwatch.redact import redact_url

log = logging.getLogger(__name__)

CLIP_SLACK_S = 2.0  # the clip buffer keeps this much more than clip_pre_s + clip_post_s
STABLE_S = 60.0  # a connection that delivered frames this long resets the reconnect backoff


class CameraWorker:
    """Keeps the latest decoded frame of one camera. A slow consumer never builds a backlog.

    The thread opens the source, decodes (keyframes only when sampling allows), publishes each frame
    into a one-frame slot, and on any failure (refused, timed out, stream ended, watchdog stall,
    garbage) goes offline and reconnects after an exponential backoff with jitter. The backoff only
    resets after a connection stayed up for `STABLE_S`, so a camera that flaps is retried ever more
    slowly up to `camera.reconnect_max_s` instead of being hammered.
    """

    def __init__(self, camera: CameraConfig, *, backoff_initial_s: float = 1.0) -> None:
        self.camera = camera
        self.backoff_initial_s = min(backoff_initial_s, camera.reconnect_max_s)
        self.stats = CameraStats(camera.id, camera.display_name, redact_url(camera.url), disabled=not camera.enabled)
        self._hwaccel = camera.hwaccel
        self._clip_problem_logged = False
        # the stream's recent packets for event clips (video sources; image folders have none)
        self.packets: PacketRing | None = (
            PacketRing(
                camera.id,
                keep_s=camera.clip_pre_s + camera.clip_post_s + CLIP_SLACK_S,
                max_bytes=int(camera.clip_buffer_mb * 1e6),
            )
            if camera.clips
            else None
        )
        self._latest: Frame | None = None
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.camera.enabled and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera.id}", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop without waiting (stop several cameras at once, then join each)."""
        self._stop.set()

    def stop(self, timeout: float | None = None, *, quiet: bool = False) -> None:
        """Stop and wait; blocking opens and reads end within the camera's timeouts."""
        self._stop.set()
        if self._thread is not None:
            limit = max(self.camera.open_timeout_s, self.camera.read_timeout_s) + 5
            self._thread.join(timeout if timeout is not None else limit)
            if self._thread.is_alive() and not quiet:
                log.error("camera %s: worker did not stop in time", self.camera.id)
            self._thread = None

    def latest(self) -> Frame | None:
        with self._lock:
            return self._latest

    def status(self) -> CameraStatus:
        status = self.stats.snapshot()
        return status if self.packets is None else dataclasses.replace(status, clip_buffer_bytes=self.packets.bytes)

    @property
    def state(self) -> str:
        return self.stats.state

    # -- worker thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self.backoff_initial_s
        url = self.camera.url
        while not self._stop.is_set():
            connected = time.monotonic()
            try:
                delivered = self._read_images(local_path(url)) if self._is_folder() else self._read_video()
                if self._stop.is_set():
                    break
                if not is_network(url):
                    if not self.camera.loop:
                        log.info("camera %s: end of %s", self.camera.id, url)
                        self._offline("end of file")
                        return
                    if delivered:
                        continue  # play the file again
                    raise SourceError(f"{url}: no frames")
                self._offline("stream ended")
            except StallError as exc:
                self.stats.stalled()
                self._offline(str(exc))
            except SourceError as exc:
                self._offline(str(exc))
            except Exception as exc:  # a camera must never take the service down
                log.exception("camera %s: unexpected error", self.camera.id)
                self._offline(f"unexpected error: {type(exc).__name__}")
            if self._stop.is_set():
                break
            if self.stats.last_frame_at is not None and self.stats.last_frame_at - connected >= STABLE_S:
                backoff = self.backoff_initial_s
            delay = backoff * random.uniform(0.8, 1.2)
            backoff = min(self.camera.reconnect_max_s, backoff * 2)
            self.stats.reconnecting()
            log.debug("camera %s: reconnecting in %.3f s", self.camera.id, delay)
            self._stop.wait(delay)

    def _offline(self, reason: str) -> None:
        if self.stats.set_state("offline", reason):
            log.warning("camera %s offline: %s", self.camera.id, reason)

    def _is_folder(self) -> bool:
        return not is_network(self.camera.url) and local_path(self.camera.url).is_dir()

    def _publish(self, source: object, pts: float | None, keyframe: bool) -> None:
        frame = Frame(self.camera.id, self._seq, time.time(), source, pts, keyframe)
        self._seq += 1
        with self._lock:
            self._latest = frame  # the previous frame is released here: never more than one held
        self.stats.delivered(frame.width, frame.height)
        if self.stats.set_state("online"):
            status = self.stats
            log.info(
                "camera %s online: %dx%d %s, decoding %s, keyframe interval %s",
                self.camera.id,
                frame.width,
                frame.height,
                status.decoder or "image",
                status.decode_mode or "all",
                "-" if status.keyframe_interval_s is None else f"{status.keyframe_interval_s:g} s",
            )

    def _start_clip_segment(self, stream: VideoStream) -> None:
        """A new connection for the clip buffer; a stream MP4 cannot hold means no clips (said once)."""
        if self.packets is None:
            return
        try:
            self.packets.start_segment(stream.stream)
        except Exception as exc:
            self.packets.end_segment()
            if not self._clip_problem_logged:
                self._clip_problem_logged = True
                log.warning("camera %s: no event clips of this stream: %s: %s", self.camera.id, type(exc).__name__, exc)

    def _packet(self, packet: av.Packet) -> None:
        self.stats.packet()
        if self.packets is not None:
            self.packets.add(packet)

    def _read_video(self) -> bool:
        """Decode until the stream ends or fails; files are paced to real time."""
        delivered = False
        with VideoStream(
            self.camera.url,
            mode=self.camera.decode,
            sample_interval_s=self.camera.sample_interval_s,
            transport=self.camera.transport,
            open_timeout_s=self.camera.open_timeout_s,
            read_timeout_s=self.camera.read_timeout_s,
            stall_timeout_s=self.camera.stall_timeout_s,
            hwaccel=self._hwaccel,
            hwaccel_device=self.camera.hwaccel_device,
            on_packet=self._packet,
        ) as stream:
            self._start_clip_segment(stream)
            try:
                if stream.hwaccel_note:
                    log.warning("camera %s: %s", self.camera.id, stream.hwaccel_note)
                    self._hwaccel = "none"  # do not pay for a failing device on every reconnect
                self.stats.connected()
                paced = not is_network(self.camera.url)
                started = time.monotonic()
                first_pts: float | None = None
                for frame, decode_s in stream.frames():
                    if self._stop.is_set():
                        break
                    if frame.width * frame.height > MAX_IMAGE_PIXELS:
                        size = f"{frame.width}x{frame.height}"
                        raise SourceError(
                            f"{self.stats.url}: {size} pictures are more than {MAX_IMAGE_PIXELS / 1e6:g} "
                            "million pixels; choose a smaller stream"
                        )
                    self.stats.decoded(decode_s)
                    self.stats.stream_info(
                        decoder=stream.decoder,
                        mode=stream.mode,
                        keyframe_interval_s=stream.keyframe_interval_s,
                        fps=stream.nominal_fps,
                    )
                    pts = float(frame.time) if frame.time is not None else None
                    if paced and pts is not None:
                        first_pts = pts if first_pts is None else first_pts
                        wait = (pts - first_pts) - (time.monotonic() - started)
                        if wait > 0 and self._stop.wait(wait):
                            break
                    self._publish(frame, pts, bool(frame.key_frame))
                    delivered = True
            finally:
                if self.packets is not None:
                    self.packets.end_segment()
        return delivered

    def _read_images(self, folder: Path) -> bool:
        """An image folder is a slow camera: one image per sample interval."""
        files = image_files(folder)
        if not files:
            raise SourceError(f"{folder}: folder has no images")
        self.stats.connected()
        delivered = False
        for path in files:
            if self._stop.is_set():
                break
            try:
                image: np.ndarray = read_image(path)
            except SourceError as exc:  # one bad image is skipped, not the folder
                log.warning("camera %s: %s", self.camera.id, exc)
                continue
            self._publish(image, None, True)
            delivered = True
            if self._stop.wait(self.camera.sample_interval_s):
                break
        if not delivered and not self._stop.is_set():
            raise SourceError(f"{folder}: no readable image in the folder")
        return delivered
