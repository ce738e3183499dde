"""Event clips: the packet ring (from a keyframe, bounded in time and bytes, one connection at a time),
the MP4 remux (stream copy, decodes, starts on a keyframe), the disk cap and retention, and end to end:
an RTSP camera (GStreamer's server) or a file -> an alert -> its clip, through `streamwatch run`."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
from support.events import new_event
from support.helpers import wait_for
from support.service import Running, write_site

from streamwatch.clips.mp4 import decoding_stamps, write_mp4
from streamwatch.clips.ring import PacketRing
from streamwatch.config import load_settings
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore
from streamwatch.tools.bench.rtsp import RtspServer
from streamwatch.tools.synthetic import write_clip


def fill(ring: PacketRing, clip: Path, *, limit: int | None = None) -> int:
    """The clip's packets into the ring, as a camera thread would add them (all at once: a file is read
    ahead of real time, so the packets keep the time of their place in the file)."""
    count = 0
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        ring.start_segment(stream)
        for packet in container.demux(stream):
            if packet.size and (limit is None or count < limit):
                ring.add(packet)
                count += 1
    return count


def decoded(path: Path) -> tuple[list[av.VideoFrame], float]:
    with av.open(str(path)) as container:
        frames = list(container.decode(container.streams.video[0]))
        return frames, float(container.duration or 0) / 1e6


def test_the_ring_keeps_whole_keyframe_intervals_for_the_time_it_needs(clips: dict[str, Path]) -> None:
    ring = PacketRing("cam", keep_s=3.0, max_bytes=100_000_000)
    fill(ring, clips["cam"])  # 8 s, 10 fps, a keyframe every second
    kept = ring._packets
    assert kept[0].keyframe and 3.0 <= kept[-1].at - kept[0].at < 4.0  # from the keyframe before the last 3 s
    span = ring.span_from(kept[-1].at - 1.5)
    assert span is not None and span.packets[0].keyframe
    assert 1.5 <= span.packets[-1].at - span.packets[0].at < 2.5  # back to the keyframe at or before
    assert ring.bytes == sum(len(p.data) for p in kept)


def test_the_ring_is_bounded_in_bytes_and_says_when_one_interval_is_too_large(
    clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    generous = PacketRing("cam", keep_s=60.0, max_bytes=100_000_000)
    fill(generous, clips["long-gop"])
    budget = generous.bytes // 2
    ring = PacketRing("cam", keep_s=60.0, max_bytes=budget)
    fill(ring, clips["long-gop"])
    assert 0 < ring.bytes <= budget and ring._packets[0].keyframe
    tiny = PacketRing("cam", keep_s=60.0, max_bytes=1_000)
    with caplog.at_level(logging.WARNING):
        fill(tiny, clips["cam"])
    assert tiny.bytes <= 1_000 and "one keyframe interval is larger than camera.clip_buffer_mb" in caplog.text


def test_a_clip_never_spans_two_connections(clips: dict[str, Path]) -> None:
    ring = PacketRing("cam", keep_s=30.0, max_bytes=100_000_000)
    fill(ring, clips["cam"], limit=25)
    span = ring.span_from(0.0)
    assert span is not None and ring.after(span.segment, span.packets[-1].seq) == ([], True)
    fill(ring, clips["cam"], limit=5)  # reconnected
    assert ring.after(span.segment, span.packets[-1].seq) == ([], False)


def test_an_alert_while_the_stream_is_down_still_gets_the_seconds_before(clips: dict[str, Path]) -> None:
    ring = PacketRing("cam", keep_s=30.0, max_bytes=100_000_000)
    fill(ring, clips["cam"], limit=40)
    first = ring.span_from(0.0)
    assert first is not None
    ring.end_segment()  # the connection dropped; no new one yet
    down = ring.span_from(ring._packets[-1].at - 2.0)  # an alert opens now, on a frame from before the drop
    assert down is not None and down.packets[0].keyframe and down.segment is first.segment
    assert ring.after(down.segment, down.packets[-1].seq) == ([], False)  # nothing more will come: write it
    ring.add(_any_packet(clips["cam"]))  # a straggler after the end: ignored
    assert ring.after(down.segment, down.packets[-1].seq) == ([], False)


def _any_packet(clip: Path) -> av.Packet:
    with av.open(str(clip)) as container:
        return next(p for p in container.demux(container.streams.video[0]) if p.size and p.is_keyframe)


def test_late_packets_move_the_clock_early_ones_do_not(clips: dict[str, Path]) -> None:
    """A live stream that fell behind is re-anchored; a file read ahead keeps its place in time."""
    ring = PacketRing("cam", keep_s=30.0, max_bytes=100_000_000)
    with av.open(str(clips["cam"])) as container:
        stream = container.streams.video[0]
        ring.start_segment(stream)
        packets = [p for p in container.demux(stream) if p.size]
        ring.add(packets[0])
        for packet in packets[1:11]:  # read ahead: a second of video at once
            ring.add(packet)
        ahead = ring._packets[-1].at
        time.sleep(2.5)  # then the stream stalls: packet 11 (at 1.1 s) comes more than REANCHOR_S late
        before = time.time()
        ring.add(packets[11])
    assert ahead - ring._packets[0].at == pytest.approx(1.0, abs=0.01)
    assert ring._packets[-1].at >= before


@pytest.mark.parametrize("name", ["cam", "bframes"])
def test_the_mp4_is_a_stream_copy_that_starts_on_a_keyframe(tmp_path: Path, clips: dict[str, Path], name: str) -> None:
    ring = PacketRing("cam", keep_s=60.0, max_bytes=100_000_000)
    fill(ring, clips[name])
    span = ring.span_from(ring._packets[-1].at - 2.5)
    assert span is not None
    path = tmp_path / "gate" / "clip.mp4"
    seconds = write_mp4(path, span.segment, span.packets)
    frames, duration = decoded(path)
    assert frames[0].key_frame and len(frames) == len(span.packets)
    assert seconds == pytest.approx(duration, abs=0.15) and 2.5 <= duration <= 3.6
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]  # no partial file left behind
    with pytest.raises(ValueError, match="starting with a keyframe"):
        write_mp4(tmp_path / "x.mp4", span.segment, span.packets[1:])
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.mp4.partial").exists()


@pytest.mark.parametrize("missing", [1, 3, 8, "all"])
def test_packets_without_decode_times_are_muxed(tmp_path: Path, clips: dict[str, Path], missing: int | str) -> None:
    """The first packets of an RTSP connection carry no DTS; with B-frames their PTS go 9000, 18000, 9000,
    ...: the muxer needs made-up decode times, increasing and never after the picture's time."""
    ring = PacketRing("cam", keep_s=60.0, max_bytes=100_000_000)
    fill(ring, clips["bframes"])
    span = ring.span_from(ring._packets[-1].at - 2.5)
    assert span is not None
    reordered = [p.pts for p in span.packets[:8]]
    assert reordered != sorted(reordered)  # type: ignore[type-var]  # B-frames: presentation order differs from decoding order
    count = len(span.packets) if missing == "all" else int(missing)
    stripped = [dataclasses.replace(p, dts=None) if i < count else p for i, p in enumerate(span.packets)]
    path = tmp_path / "clip.mp4"
    seconds = write_mp4(path, span.segment, stripped)
    frames, _duration = decoded(path)
    assert len(frames) == len(span.packets) and frames[0].key_frame and seconds > 2.0
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)  # shown in order
    stamps = decoding_stamps(stripped)
    assert all(a[1] < b[1] for a, b in itertools.pairwise(stamps)) and all(dts <= pts for pts, dts in stamps)


def test_the_disk_cap_deletes_the_oldest_clips_first_and_retention_deletes_clips(tmp_path: Path) -> None:
    store = EventStore(Database.open(f"sqlite:///{tmp_path / 'events.db'}"), tmp_path / "media")
    jpeg = b"\xff\xd8" + b"j" * 998
    now = datetime.now(UTC)
    for index in range(4):
        new = new_event(f"e{index}", frame_at=now - timedelta(minutes=10 - index))
        new = dataclasses.replace(new, clip=EventStore.media_relative(new, ".mp4"))
        event = store.record(new, jpeg)
        clip = tmp_path / "media" / str(event.clip)
        clip.write_bytes(b"m" * 3000)
        store.clip_written(event.uid, 1.0)
        stamp = time.time() - 600 + index * 60  # older events, older files
        for path in (clip, tmp_path / "media" / str(event.snapshot)):
            os.utime(path, (stamp, stamp))
    assert store.cap_disk(16_000) == (0, 0)  # 4 x (3000 + 1000) bytes fit
    deleted, freed = store.cap_disk(10_000)  # two clips must go: the two oldest
    assert (deleted, freed) == (2, 6000)
    events = {e.uid: e for e in store.list()}
    assert [uid for uid in sorted(events) if events[uid].clip] == ["e2", "e3"]
    assert all(events[uid].snapshot for uid in events) and events["e0"].clip_s is None
    assert store.cap_disk(2_500) == (4, 8000)  # the other two clips, then the two oldest snapshots
    rows, files = store.prune(datetime.now(UTC) + timedelta(seconds=1))
    assert rows == 4 and files == 2 and not list((tmp_path / "media").rglob("*.*"))


def alert_config(tmp_path: Path, url: str, post_s: float = 2.0) -> Path:
    config = write_site(tmp_path, url, None)
    text = config.read_text().replace(
        'tags = ["perimeter"]', f'tags = ["perimeter"]\nclip_pre_s = 2\nclip_post_s = {post_s}'
    )
    config.write_text(text)
    return config


def _clip_settled(store: EventStore, uid: str) -> bool:
    """The event's clip was written (it has a length) or will not be (no clip file named)."""
    event = store.get(uid)
    return event is not None and (event.clip_s is not None or event.clip is None)


def check_clip(path: Path, pre_s: float, post_s: float, gop_s: float = 1.0) -> None:
    frames, duration = decoded(path)
    assert frames and frames[0].key_frame
    assert pre_s + post_s - 0.2 <= duration <= pre_s + post_s + gop_s + 0.2, duration


@pytest.mark.parametrize("source", ["rtsp", "file"])
def test_an_alert_gets_a_clip_of_its_camera(tmp_path: Path, clips: dict[str, Path], source: str) -> None:
    """The RTSP camera (or the file) -> the figure on the right -> an alert -> clip_pre_s + clip_post_s of
    video from a keyframe, named by the event, served by the API."""
    # a file's clip ends where the file does (its next loop is a new connection): 16 s, the alert at ~5 s
    long = write_clip(tmp_path / "long.mp4", seconds=16)
    with RtspServer({"/gate": clips["cam"]}) as rtsp:
        url = rtsp.url("/gate") if source == "rtsp" else str(long)
        settings = load_settings(alert_config(tmp_path, url))
        running = Running(settings)
        base = f"http://127.0.0.1:{settings.web.port}/api/events"
        store = EventStore(Database.open(settings.database_url()), tmp_path / "data" / "snapshots")
        try:
            wait_for(lambda: any(e.kind == "open" for e in store.list()), 40, "an alert")
            opened = next(e for e in store.list() if e.kind == "open")
            assert opened.clip == f"gate/{opened.frame_at:%Y-%m-%d}/{opened.uid}.mp4"
            wait_for(lambda: store.clip_path(store.get(opened.uid)) is not None, 20, "the clip")  # type: ignore[arg-type]
            with urllib.request.urlopen(f"{base}/{opened.uid}") as response:
                shown = json.load(response)
            with urllib.request.urlopen(f"{base}/{opened.uid}/clip.mp4") as response:
                assert response.headers["Content-Type"] == "video/mp4"
                (tmp_path / "served.mp4").write_bytes(response.read())
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{settings.web.port}/metrics").read().decode()
        finally:
            running.stop()
    assert shown["clip_url"] == f"/api/events/{opened.uid}/clip.mp4" and 3.8 <= shown["clip_s"] <= 5.3
    check_clip(tmp_path / "served.mp4", 2.0, 2.0)
    buffered = [
        line for line in metrics.splitlines() if line.startswith('streamwatch_camera_clip_buffer_bytes{camera="gate"}')
    ]
    assert buffered and float(buffered[0].split()[-1]) > 0


def test_an_rtsp_camera_with_bframes_gets_its_clip_from_the_start_of_the_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Over RTSP the first packets of a connection carry no decode time; with B-frames their presentation
    times are out of order. An alert a few seconds after the (re)connect has those packets in its clip
    (clip_pre_s reaches back past the connect): the clip is written all the same."""
    bframes = write_clip(tmp_path / "bframes.mp4", seconds=8, bframes=2)
    with RtspServer({"/gate": bframes}) as rtsp:
        config = alert_config(tmp_path, rtsp.url("/gate"))
        config.write_text(config.read_text().replace("clip_pre_s = 2", "clip_pre_s = 30"))
        settings = load_settings(config)
        running = Running(settings)
        store = EventStore(Database.open(settings.database_url()), tmp_path / "data" / "snapshots")
        try:
            wait_for(lambda: any(e.kind == "open" for e in store.list()), 40, "an alert")
            opened = next(e for e in store.list() if e.kind == "open")
            wait_for(lambda: _clip_settled(store, opened.uid), 30, "the clip")
        finally:
            running.stop()
    event = store.get(opened.uid)
    assert event is not None and event.clip is not None, caplog.text
    assert "could not be written" not in caplog.text
    frames, duration = decoded(tmp_path / "data" / "snapshots" / event.clip)
    assert frames[0].key_frame and duration >= 2.0 and [f.pts for f in frames] == sorted(f.pts for f in frames)


def test_a_clip_being_recorded_at_shutdown_is_written_with_what_arrived(tmp_path: Path, clips: dict[str, Path]) -> None:
    settings = load_settings(alert_config(tmp_path, str(clips["cam"]), post_s=60))
    store = EventStore(Database.open(settings.database_url()), tmp_path / "data" / "snapshots")
    running = Running(settings)
    try:
        wait_for(lambda: any(e.kind == "open" for e in store.list()), 40, "an alert")
        opened = next(e for e in store.list() if e.kind == "open")
        assert opened.clip_s is None  # still recording: 60 s after the alert
        with pytest.raises(urllib.error.HTTPError) as pending:
            urllib.request.urlopen(f"http://127.0.0.1:{settings.web.port}/api/events/{opened.uid}/clip.mp4")
        assert pending.value.code == 404 and "still being recorded" in pending.value.read().decode()
    finally:
        running.stop()
    event = store.get(opened.uid)
    assert event is not None and event.clip_s is not None and 2.0 <= event.clip_s < 60
    frames, _duration = decoded(tmp_path / "data" / "snapshots" / str(event.clip))
    assert frames[0].key_frame
