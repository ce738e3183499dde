"""Remux kept packets into an MP4 file: stream copy, no decoding, written atomically."""

from __future__ import annotations

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
    base = min(min(_stamp(p), p.dts if p.dts is not None else _stamp(p)) for p in packets)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    first, last = min(_stamp(p) for p in packets), base
    try:
        with av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream_from_template(segment.template)
            for kept in packets:
                packet = av.Packet(kept.data)
                packet.dts = (kept.dts if kept.dts is not None else _stamp(kept)) - base
                packet.pts = (kept.pts if kept.pts is not None else _stamp(kept)) - base
                if kept.duration:
                    packet.duration = kept.duration
                packet.is_keyframe = kept.keyframe
                packet.time_base = segment.time_base
                packet.stream = stream
                out.mux(packet)
                last = max(last, _stamp(kept) + (kept.duration or 0))
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return float((last - first) * segment.time_base)  # shown: from the first picture to the end of the last


def _stamp(packet: Packet) -> int:
    stamp = packet.pts if packet.pts is not None else packet.dts
    return stamp if stamp is not None else 0
