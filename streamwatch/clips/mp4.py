"""Remux kept packets into an MP4 file: stream copy, no decoding, written atomically."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import av

from streamwatch.clips.ring import Packet, Segment


def write_mp4(path: Path, segment: Segment, packets: Sequence[Packet]) -> float:
    """Write `packets` (from a keyframe on, in decoding order) to `path`; returns the clip's duration in
    seconds. Timestamps start at zero; the moov box goes first (`faststart`) so browsers can start
    playing before the whole file is loaded. Readers never see a half-written file."""
    if not packets or not packets[0].keyframe:
        raise ValueError("a clip needs packets starting with a keyframe")
    stamps = decoding_stamps(packets)
    base = min(min(pts, dts) for pts, dts in stamps)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    first, last = min(pts for pts, _dts in stamps), base
    try:
        with av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream_from_template(segment.template)
            for kept, (pts, dts) in zip(packets, stamps, strict=True):
                packet = av.Packet(kept.data)
                packet.dts, packet.pts = dts - base, pts - base
                if kept.duration:
                    packet.duration = kept.duration
                packet.is_keyframe = kept.keyframe
                packet.time_base = segment.time_base
                packet.stream = stream
                out.mux(packet)
                last = max(last, pts + (kept.duration or 0))
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return float((last - first) * segment.time_base)  # shown: from the first picture to the end of the last


def decoding_stamps(packets: Sequence[Packet]) -> list[tuple[int, int]]:
    """(pts, dts) of each packet, as the MP4 muxer needs them: dts strictly increasing and never after
    pts. The packets' own decode times where every packet has one and they increase; otherwise (the
    first packets of an RTSP connection carry none, and with B-frames their presentation times go
    9000, 18000, 9000, ...) decode times are made from the presentation times: the i-th smallest pts,
    shifted back just enough that no packet is decoded after it is shown (as FFmpeg does)."""
    shown: list[int] = []
    for packet in packets:
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:  # neither: right after the one before
            stamp = shown[-1] + (packets[len(shown) - 1].duration or 1) if shown else 0
        shown.append(stamp)
    given = [packet.dts for packet in packets]
    if all(dts is not None for dts in given):
        known = [int(dts) for dts in given if dts is not None]
        increasing = all(a < b for a, b in itertools.pairwise(known))
        if increasing and all(d <= p for d, p in zip(known, shown, strict=True)):
            return list(zip(shown, known, strict=True))
    ordered = sorted(shown)
    shift = max(0, *(ordered[index] - pts for index, pts in enumerate(shown)))
    made: list[int] = []
    for index in range(len(shown)):
        dts = ordered[index] - shift
        if made and dts <= made[-1]:  # two pictures with one pts: keep decode times increasing
            dts = made[-1] + 1
        made.append(dts)
    return [(max(pts, dts), dts) for pts, dts in zip(shown, made, strict=True)]


def clip_seconds(path: Path) -> float | None:
    """The length of a written clip; None when the file is missing or not a readable MP4."""
    try:
        with av.open(str(path)) as container:
            return float(container.duration or 0) / 1e6 if container.streams.video else None
    except (OSError, av.error.FFmpegError, ValueError):
        return None
