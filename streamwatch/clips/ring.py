"""Per camera: the stream's recent encoded packets, kept for event clips (no decoding, no re-encoding).

The camera thread adds every video packet it demuxes. Each packet gets the wall-clock time of its
picture: at a connection's first packet the stream's clock (pts) is anchored to the wall clock, and
re-anchored whenever packets arrive more than a second later than that says (a live stream that fell
behind); files are read ahead of real time, so their packets keep the time of their place in the file.
The ring always starts on a keyframe and keeps the last `keep_s` seconds from the keyframe before
them, and at most `max_bytes`: the oldest keyframe interval goes first.

A connection is a segment: a clip never mixes two (the stream's parameters may change on reconnect);
each segment holds a template of its stream for the MP4 muxer that outlives the connection. When a
connection ends, its packets stay until the next one starts: an alert that opens while the stream is
down still gets the seconds before it.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

log = logging.getLogger(__name__)

REANCHOR_S = 1.0  # packets this much later than the stream's clock says: the clock is anchored again


class Segment:
    """One connection's video stream as the MP4 muxer needs it (codec parameters, time base)."""

    def __init__(self, number: int, stream: Any) -> None:
        self.number = number
        self.time_base: Fraction = stream.time_base or Fraction(1, 90_000)
        holder = av.open(io.BytesIO(), "w", format="mp4")  # never written: it only holds the template
        self.template = holder.add_stream_from_template(stream)
        self._holder = holder


@dataclass(frozen=True)
class Packet:
    data: bytes
    pts: int | None
    dts: int | None
    duration: int | None
    keyframe: bool
    at: float  # wall-clock time of its picture
    seq: int  # order of arrival in this ring


@dataclass(frozen=True)
class Span:
    """Packets of one segment from a keyframe on, in arrival (decoding) order."""

    segment: Segment
    packets: list[Packet]


class PacketRing:
    """Thread-safe: the camera thread adds, clip writers read."""

    def __init__(self, camera: str, *, keep_s: float, max_bytes: int) -> None:
        self.camera = camera
        self.keep_s, self.max_bytes = keep_s, max_bytes
        self._lock = threading.Lock()
        self._packets: deque[Packet] = deque()
        self._bytes = 0
        self._segment: Segment | None = None  # the newest connection's (ended ones keep their packets)
        self._live = False  # whether that connection is still delivering
        self._segments = 0
        self._seq = 0
        self._anchor: tuple[float, float] | None = None  # (wall clock, stream seconds)
        self._over_budget_logged = False

    # -- the camera thread -------------------------------------------------------------------------
    def start_segment(self, stream: Any) -> None:
        """A new connection: its packets start a new segment (the old one's are dropped)."""
        segment = Segment(self._segments + 1, stream)
        with self._lock:
            self._segments += 1
            self._segment, self._anchor, self._live = segment, None, True
            self._packets.clear()
            self._bytes = 0

    def end_segment(self) -> None:
        """The connection ended: clips waiting for more of it are finished with what there is; its
        packets stay for alerts that open before the next connection."""
        with self._lock:
            self._live = False

    def add(self, packet: av.Packet) -> None:
        if packet.size == 0 or self._segment is None or not self._live:
            return
        data, key = bytes(packet), bool(packet.is_keyframe)
        stamp = packet.pts if packet.pts is not None else packet.dts
        now = time.time()
        with self._lock:
            if not self._packets and not key:
                return  # a clip must start on a keyframe
            at = now
            if stamp is not None and packet.time_base is not None:
                seconds = float(stamp * packet.time_base)
                if self._anchor is None or now - (self._anchor[0] + seconds - self._anchor[1]) > REANCHOR_S:
                    self._anchor = (now, seconds)
                at = self._anchor[0] + seconds - self._anchor[1]
            self._seq += 1
            self._packets.append(Packet(data, packet.pts, packet.dts, packet.duration, key, at, self._seq))
            self._bytes += len(data)
            self._trim()

    def _trim(self) -> None:
        newest = self._packets[-1].at
        while self._second_keyframe_before(newest - self.keep_s):
            self._drop_oldest_interval()
        while self._bytes > self.max_bytes and self._packets:
            self._drop_oldest_interval()
            if not self._packets and not self._over_budget_logged:
                log.warning(
                    "camera %s: one keyframe interval is larger than camera.clip_buffer_mb (%.0f MB); "
                    "clips will be short or missing",
                    self.camera,
                    self.max_bytes / 1e6,
                )
                self._over_budget_logged = True

    def _second_keyframe_before(self, limit: float) -> bool:
        """Whether the keyframe after the oldest one is at or before `limit` (the oldest interval can go)."""
        for index, packet in enumerate(self._packets):
            if index and packet.keyframe:
                return packet.at <= limit
        return False

    def _drop_oldest_interval(self) -> None:
        """The oldest keyframe and what depends on it, up to the next keyframe."""
        first = self._packets.popleft()
        self._bytes -= len(first.data)
        while self._packets and not self._packets[0].keyframe:
            self._bytes -= len(self._packets.popleft().data)

    # -- clip writers ------------------------------------------------------------------------------
    def span_from(self, start: float) -> Span | None:
        """The newest segment's packets (its connection may have ended) from the last keyframe at or before
        `start` (or its oldest keyframe, if the ring does not reach back that far); None without packets."""
        with self._lock:
            if self._segment is None or not self._packets:
                return None
            packets = list(self._packets)
            segment = self._segment
        first = 0
        for index, packet in enumerate(packets):
            if packet.keyframe and packet.at <= start:
                first = index
        return Span(segment, packets[first:])

    def after(self, segment: Segment, seq: int) -> tuple[list[Packet], bool]:
        """Packets of `segment` that arrived after `seq`, and whether more may come (False once its
        connection ended or was replaced: a clip waiting for more is finished with what there is)."""
        with self._lock:
            if self._segment is not segment:
                return [], False
            return [packet for packet in self._packets if packet.seq > seq], self._live

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes
