"""What a camera worker knows about its camera: state, recent trouble, rates and a quality grade."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

State = Literal["starting", "online", "offline", "disabled"]
Quality = Literal["good", "fair", "poor", "down", "disabled"]

HOUR_S = 3600.0
RATE_WINDOW_S = 10.0


@dataclass(frozen=True)
class CameraStatus:
    """A snapshot, safe to show anywhere: the URL is redacted and errors are scrubbed."""

    id: str
    name: str
    url: str  # credentials redacted
    state: State
    since: float  # wall clock of the last state change
    last_error: str
    quality: Quality
    reconnects: int  # since start
    reconnects_last_hour: int
    stalls_last_hour: int  # watchdog restarts
    fps: float  # frames decoded per second (keyframe-only: keyframes per second)
    stream_fps: float  # video packets received per second
    decode_ms: float  # CPU time per decoded frame (moving average)
    decode_mode: str  # "keyframes", "all" or "" before the stream is known
    keyframe_interval_s: float | None
    decoder: str  # e.g. "h264" or "h264 (cuda)"
    width: int
    height: int
    frames: int  # frames delivered since start
    last_frame_age_s: float | None
    clip_buffer_bytes: int = 0  # memory of the packets kept for event clips

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One log line: key=value fields."""
        return (
            f"camera={self.id} state={self.state} quality={self.quality} fps={self.fps:.1f} "
            f"stream_fps={self.stream_fps:.1f} decode={self.decode_mode} decode_ms={self.decode_ms:.1f} "
            f"reconnects_1h={self.reconnects_last_hour} stalls_1h={self.stalls_last_hour} error={self.last_error!r}"
        )


class _Recent:
    """Timestamps of events within a sliding window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)
        self._prune(now)

    def count(self, now: float) -> int:
        self._prune(now)
        return len(self._times)

    def rate(self, now: float, since: float) -> float:
        """Events per second over the window (or since `since`, if that is more recent)."""
        self._prune(now)
        span = min(self.window_s, now - since)
        return len(self._times) / span if span >= 1.0 else 0.0

    def _prune(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()


class CameraStats:
    """Updated by the worker thread, read from anywhere; `snapshot()` is consistent under a lock."""

    def __init__(self, camera_id: str, name: str, url: str, *, disabled: bool = False) -> None:
        self.camera_id, self.name, self.url = camera_id, name, url
        self._lock = threading.Lock()
        self.state: State = "disabled" if disabled else "starting"
        self.since = time.time()
        self.last_error = ""
        self.reconnects = 0
        self._reconnects = _Recent(HOUR_S)
        self._stalls = _Recent(HOUR_S)
        self._frames = _Recent(RATE_WINDOW_S)
        self._packets = _Recent(RATE_WINDOW_S)
        self._connected_at = time.monotonic()
        self._decoded_this_connection = 0
        self.decode_ms = 0.0
        self.decode_mode = ""
        self.keyframe_interval_s: float | None = None
        self.decoder = ""
        self.width = self.height = 0
        self.frames = 0
        self.last_frame_at: float | None = None  # monotonic
        self.nominal_fps: float | None = None

    # -- worker side -------------------------------------------------------------------------------
    def set_state(self, state: State, error: str = "") -> bool:
        """Returns True when this is a change worth logging."""
        with self._lock:
            changed = state != self.state or error != self.last_error
            if state != self.state:
                self.since = time.time()
            self.state, self.last_error = state, error
            return changed

    def connected(self) -> None:
        with self._lock:
            self._connected_at = time.monotonic()
            self._frames = _Recent(RATE_WINDOW_S)
            self._packets = _Recent(RATE_WINDOW_S)
            self._decoded_this_connection = 0

    def reconnecting(self) -> None:
        with self._lock:
            self.reconnects += 1
            self._reconnects.add(time.monotonic())

    def stalled(self) -> None:
        with self._lock:
            self._stalls.add(time.monotonic())

    def packet(self) -> None:
        with self._lock:
            self._packets.add(time.monotonic())

    def decoded(self, decode_s: float) -> None:
        """Mean-ish decode time (moving average); a connection's first frame also opened the decoder."""
        ms = decode_s * 1000
        with self._lock:
            self._decoded_this_connection += 1
            if self._decoded_this_connection == 1 and self.decode_ms:
                return
            self.decode_ms = ms if self.decode_ms == 0 else 0.9 * self.decode_ms + 0.1 * ms

    def delivered(self, width: int, height: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames += 1
            self.last_frame_at = now
            self.width, self.height = width, height
            self._frames.add(now)

    def stream_info(self, *, decoder: str, mode: str, keyframe_interval_s: float | None, fps: float | None) -> None:
        with self._lock:
            self.decoder, self.decode_mode = decoder, mode
            self.keyframe_interval_s, self.nominal_fps = keyframe_interval_s, fps

    # -- reader side -------------------------------------------------------------------------------
    def snapshot(self) -> CameraStatus:
        now = time.monotonic()
        with self._lock:
            reconnects_hour = self._reconnects.count(now)
            stalls_hour = self._stalls.count(now)
            stream_fps = self._packets.rate(now, self._connected_at)
            return CameraStatus(
                id=self.camera_id,
                name=self.name,
                url=self.url,
                state=self.state,
                since=self.since,
                last_error=self.last_error,
                quality=grade(self.state, reconnects_hour + stalls_hour, stream_fps, self.nominal_fps),
                reconnects=self.reconnects,
                reconnects_last_hour=reconnects_hour,
                stalls_last_hour=stalls_hour,
                fps=round(self._frames.rate(now, self._connected_at), 2),
                stream_fps=round(stream_fps, 2),
                decode_ms=round(self.decode_ms, 2),
                decode_mode=self.decode_mode,
                keyframe_interval_s=self.keyframe_interval_s,
                decoder=self.decoder,
                width=self.width,
                height=self.height,
                frames=self.frames,
                last_frame_age_s=None if self.last_frame_at is None else round(now - self.last_frame_at, 3),
            )


def grade(state: State, problems_last_hour: int, stream_fps: float, nominal_fps: float | None) -> Quality:
    """good: no reconnect or stall in the last hour and frames arrive at the stream's rate;
    fair: one to three problems, or frames arrive below 80 % of the nominal rate;
    poor: more than three problems in the last hour; down: not online now."""
    if state == "disabled":
        return "disabled"
    if state != "online":
        return "down"
    if problems_last_hour > 3:
        return "poor"
    slow = nominal_fps is not None and stream_fps > 0 and stream_fps < 0.8 * nominal_fps
    if problems_last_hour > 0 or slow:
        return "fair"
    return "good"
