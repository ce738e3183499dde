"""One open video stream: demux packets, decode only what sampling needs, watch for stalls."""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Literal

import av
from av.codec.hwaccel import HWAccel

from streamwatch.errors import SourceError, StallError
from streamwatch.ingest.sources import open_container
from streamwatch.redact import redact_url, scrub

log = logging.getLogger(__name__)

DecodeMode = Literal["auto", "keyframes", "all"]


class VideoStream:
    """Decode a camera's video with the fewest decoded frames that still serve the sample interval.

    keyframes: only keyframe packets reach the decoder (`skip_frame = NONKEY` as well), and the
    decoder is drained after each so streams with B-frames do not hold the picture back.
    all: every packet is decoded. auto: keyframes when the sample interval is at least the stream's
    keyframe interval (measured from packet flags, the longest of the last four), else all; it only
    switches at a keyframe. Until the interval is known, auto decodes keyframes only.
    """

    def __init__(
        self,
        url: str,
        *,
        mode: DecodeMode = "auto",
        sample_interval_s: float = 2.0,
        transport: str = "tcp",
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        stall_timeout_s: float = 30.0,
        hwaccel: str = "none",
        hwaccel_device: str | None = None,
        on_packet: Callable[[av.Packet], None] | None = None,
    ) -> None:
        self.url = url
        self.requested_mode: DecodeMode = mode
        self.sample_interval_s = sample_interval_s
        self.stall_timeout_s = stall_timeout_s
        self._on_packet = on_packet
        self.hwaccel_note = ""
        self._keyframe_times: deque[float] = deque(maxlen=5)
        self.keyframes_only = mode != "all"
        self.container = self._open(url, transport, open_timeout_s, read_timeout_s, hwaccel, hwaccel_device)
        try:
            if not self.container.streams.video:
                raise SourceError(f"{redact_url(url)}: no video stream (found {self._stream_kinds()})")
            self.stream = self.container.streams.video[0]
            context = self.stream.codec_context
            # One decoding thread per camera: frame threads would hold pictures back by several frames,
            # cameras already decode in parallel with each other, and the CPU time is then measurable.
            context.thread_count = 1
            if self.keyframes_only:
                context.skip_frame = "NONKEY"
        except BaseException:
            self.container.close()
            raise

    def _open(
        self, url: str, transport: str, open_s: float, read_s: float, hwaccel: str, device: str | None
    ) -> av.container.InputContainer:
        self.hwaccel = hwaccel
        if hwaccel == "none":
            return open_container(url, transport=transport, open_timeout_s=open_s, read_timeout_s=read_s)
        accel = HWAccel(hwaccel, device=device, allow_software_fallback=True)
        try:
            return open_container(url, transport=transport, open_timeout_s=open_s, read_timeout_s=read_s, hwaccel=accel)
        except SourceError as exc:  # no such device, no driver, ... or the camera itself failed: try without
            container = open_container(url, transport=transport, open_timeout_s=open_s, read_timeout_s=read_s)
            self.hwaccel_note = f"{hwaccel} decoding unavailable ({exc}); decoding in software"
            self.hwaccel = "none"
            return container

    def _stream_kinds(self) -> str:
        kinds = [stream.type for stream in self.container.streams]
        return ", ".join(kinds) if kinds else "no streams"

    # -- facts -------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return "keyframes" if self.keyframes_only else "all"

    @property
    def decoder(self) -> str:
        context = self.stream.codec_context
        return f"{context.name} ({self.hwaccel})" if context.is_hwaccel else str(context.name)

    @property
    def nominal_fps(self) -> float | None:
        rate = self.stream.average_rate or self.stream.guessed_rate
        return float(rate) if rate else None

    @property
    def keyframe_interval_s(self) -> float | None:
        times = list(self._keyframe_times)
        gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
        return round(max(gaps), 3) if gaps else None

    # -- decoding ----------------------------------------------------------------------------------
    def frames(self) -> Iterator[tuple[av.VideoFrame, float]]:
        """Decoded frames with the CPU time spent decoding each. Raises SourceError or StallError."""
        context = self.stream.codec_context
        last_output = time.monotonic()
        try:
            for packet in self.container.demux(self.stream):
                if packet.size == 0:  # end of stream: the decoder still holds reordered pictures
                    yield from self._timed(context.decode(None), 0.0)
                    continue
                if self._on_packet is not None:
                    self._on_packet(packet)  # every video packet, decoded or not (stats, clip buffer)
                if packet.is_keyframe:
                    self._keyframe(packet)
                if self.keyframes_only and not packet.is_keyframe:
                    if time.monotonic() - last_output > self.stall_timeout_s:
                        raise StallError(f"no frame decoded for {self.stall_timeout_s:g} s (watchdog)")
                    continue
                started = time.thread_time()  # CPU time: waiting for a core or the GIL is not decoding
                decoded = context.decode(packet)
                if self.keyframes_only and not decoded:
                    decoded = context.decode(None)  # drain: a B-frame stream holds pictures back
                    context.flush_buffers()
                for frame, decode_s in self._timed(decoded, time.thread_time() - started):
                    yield frame, decode_s
                    last_output = time.monotonic()
                if time.monotonic() - last_output > self.stall_timeout_s:
                    raise StallError(f"no frame decoded for {self.stall_timeout_s:g} s (watchdog)")
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(scrub(f"{redact_url(self.url)}: reading failed: {exc}")) from None

    def _timed(self, decoded: list[av.VideoFrame], elapsed: float) -> Iterator[tuple[av.VideoFrame, float]]:
        for index, frame in enumerate(decoded):
            if frame.time_base is None:  # drained frames come without one
                frame.time_base = self.stream.time_base
            yield frame, elapsed if index == 0 else 0.0

    def _keyframe(self, packet: av.Packet) -> None:
        if packet.pts is not None and packet.time_base is not None:
            when = float(packet.pts * packet.time_base)
        elif packet.dts is not None and packet.time_base is not None:
            when = float(packet.dts * packet.time_base)
        else:
            when = time.monotonic()
        if self._keyframe_times and when <= self._keyframe_times[-1]:
            self._keyframe_times.clear()  # the stream restarted its clock
        self._keyframe_times.append(when)
        if self.requested_mode != "auto":
            return
        interval = self.keyframe_interval_s
        want = interval is None or self.sample_interval_s >= interval
        if want != self.keyframes_only:
            log.info(
                "%s: keyframe interval %.2f s, sample interval %.2f s: decoding %s",
                redact_url(self.url),
                interval or 0.0,
                self.sample_interval_s,
                "keyframes only" if want else "all frames",
            )
            self.keyframes_only = want
            self.stream.codec_context.skip_frame = "NONKEY" if want else "DEFAULT"

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
