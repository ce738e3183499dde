"""An MP4 clip of every alert that opens: `clip_pre_s` before its frame (from the keyframe before) to
`clip_post_s` after, remuxed from the camera's packet ring next to the event's snapshot.

When an alert opens, `plan` takes the packets already kept (the part before) and names the file; the
event is recorded with that name. `start` then collects the packets that follow until the stream has
passed the end (or its connection ended, or `clip_post_s` + `WAIT_EXTRA_S` went by), writes the file in
a thread and marks the event's clip written (its length) or, on failure, names none. At shutdown every
pending clip is written at once with what has arrived: nothing recorded is thrown away. After a crash,
`settle` marks at the next start what was still being recorded (written, or lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from streamwatch.clips.mp4 import clip_seconds, write_mp4
from streamwatch.clips.ring import PacketRing, Span
from streamwatch.config import CameraConfig
from streamwatch.store.events import EventStore, NewEvent

log = logging.getLogger(__name__)

WAIT_EXTRA_S = 10.0  # a stream that falls behind gets this long past clip_post_s
POLL_S = 0.25
MAX_PENDING = 64  # clips being recorded at once, all cameras together


@dataclass(frozen=True)
class ClipPlan:
    camera: str
    relative: str  # under the store's snapshot_dir
    ring: PacketRing
    span: Span  # the part before, from a keyframe
    end: float  # wall clock: the last picture it shows


class ClipRecorder:
    def __init__(self, store: EventStore, rings: Callable[[str], PacketRing | None]) -> None:
        self.store, self.rings = store, rings
        self._jobs: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ClipRecorder]:
        """At exit, clips still being recorded are written with what has arrived."""
        self._stopping.clear()
        try:
            yield self
        finally:
            self._stopping.set()
            if self._jobs:
                await asyncio.gather(*self._jobs, return_exceptions=True)

    async def settle(self, owns: Callable[[str], bool]) -> int:
        """At start: the clips a previous run was still recording (it was killed) for the cameras this
        instance `owns` are settled: a file it finished writing is marked with its length, the others are
        marked lost (their packets went with the process), so none says "being recorded" for ever.
        Returns how many were lost."""
        lost = 0
        for uid, camera, relative in await asyncio.to_thread(self.store.unfinished_clips):
            if not owns(camera):
                continue  # another shard's, maybe recording now
            path = self.store.snapshot_dir / relative
            seconds = await asyncio.to_thread(clip_seconds, path)
            path.with_name(path.name + ".partial").unlink(missing_ok=True)
            await asyncio.to_thread(self.store.clip_written, uid, seconds)
            if seconds is None:
                lost += 1
                log.warning(
                    "camera %s: the clip of event %s was lost: the service stopped while recording it", camera, uid
                )
        return lost

    def plan(self, camera: CameraConfig, new: NewEvent) -> ClipPlan | None:
        """A clip for this open event, if the camera keeps packets and has some; None otherwise."""
        ring = self.rings(camera.id) if camera.clips else None
        if ring is None:
            return None
        at = new.frame_at.timestamp()
        span = ring.span_from(at - camera.clip_pre_s)
        if span is None:
            return None
        if len(self._jobs) >= MAX_PENDING:
            log.warning(
                "camera %s: %d clips are being recorded already; no clip for this alert", camera.id, MAX_PENDING
            )
            return None
        return ClipPlan(camera.id, EventStore.media_relative(new, ".mp4"), ring, span, at + camera.clip_post_s)

    def start(self, plan: ClipPlan, uid: str) -> None:
        """Record the rest of the clip and write it (the event `uid` names it already)."""
        task = asyncio.create_task(self._record(plan, uid), name=f"clip-{uid}")
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _record(self, plan: ClipPlan, uid: str) -> None:
        packets = list(plan.span.packets)
        deadline = time.monotonic() + max(0.0, plan.end - time.time()) + WAIT_EXTRA_S
        while True:
            more, live = plan.ring.after(plan.span.segment, packets[-1].seq)
            packets += more
            if not live:
                break  # the connection ended: the clip ends there
            if packets[-1].at >= plan.end or time.monotonic() >= deadline or self._stopping.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), POLL_S)
        shown = [p for p in packets if p.at <= plan.end]
        path = self.store.snapshot_dir / plan.relative
        seconds: float | None = None
        try:
            seconds = await asyncio.to_thread(write_mp4, path, plan.span.segment, shown)
        except Exception:
            log.exception("camera %s: the clip of event %s could not be written", plan.camera, uid)
        try:
            await asyncio.to_thread(self.store.clip_written, uid, seconds)
        except Exception:
            log.exception("camera %s: could not record whether the clip of event %s was written", plan.camera, uid)
            return
        if seconds is not None:
            log.info("camera %s: clip of event %s: %s (%.1f s)", plan.camera, uid, path, seconds)
