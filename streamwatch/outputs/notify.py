"""Push notifications through Apprise (`[[notify]]`): each URL is a target with its own queue in the
outbox, so a notification is committed with its event, delivered in order, retried with a backoff
while its receiver is down, and one failing target never holds up another or MQTT.

Routing (severity, rule, camera, event kind), quiet hours and the hourly limit (`outputs/limit.py`:
only what went out counts, critical always goes out) are decided when the event is committed: what is
not to be sent is never queued (and is counted). At start the limit is rebuilt from the last hour's
events, so a restart neither forgets it nor grants a fresh hour.

The message: a title (severity, rule title, camera), the camera, rule, answer and confidence, the
`describe` answer (an open alert's notification goes at once, or waits up to `wait_for_description_s`
for it), the time, a link to the alert page (`web.public_url`) and its clip, and the snapshot
attached. A target's URL holds its token: logs, metrics and errors name the target (`name#N`), never
the URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from streamwatch.config import CameraConfig, NotifyConfig
from streamwatch.errors import NotifyError
from streamwatch.outputs.limit import HOUR_S, HourlyLimit
from streamwatch.outputs.relay import Relay, RelayedOutput
from streamwatch.store.message import Message
from streamwatch.store.models import Event
from streamwatch.store.outbox import Outbox
from streamwatch.vocabulary import DescriptionState, EventKind

log = logging.getLogger(__name__)

CLIP_GRACE_S = 30.0  # past clip_post_s, how long a notification waits for its clip before going without
CLIP_POLL_S = 0.5
KIND_WORDS = {EventKind.OPEN: "", EventKind.UPDATE: "Still: ", EventKind.RESOLVED: "Resolved: "}
APPRISE_TYPES = {"critical": "failure", "warning": "warning", "info": "info"}


def sink_of(target: str) -> str:
    """A target's queue in the outbox: stable for its name and place, short enough for the column."""
    return "notify:" + hashlib.sha256(target.encode()).hexdigest()[:24]


class NotifyOutput(RelayedOutput):
    check = "notify"

    def __init__(
        self,
        config: NotifyConfig,
        index: int,
        outbox: Outbox,
        *,
        cameras: list[CameraConfig],
        media_dir: Path,
        public_url: str | None,
        counter: Counter | None = None,
        history: Callable[[datetime], Sequence[Event]] | None = None,
        description_of: Callable[[str], tuple[str | None, str | None]] | None = None,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 5.0,
    ) -> None:
        self.config, self.url = config, config.urls[index]
        self.target = f"{config.name}#{index + 1}"
        self.name = sink_of(self.target)  # its queue in the outbox
        self.check = f"notify {self.target}"
        self.cameras = {camera.id: camera for camera in cameras}
        self.media_dir, self.public_url, self.counter = media_dir, public_url, counter
        self.limit = HourlyLimit(self.target, config.max_per_hour)
        self.history = history  # this instance's events committed since a time, oldest first
        self.description_of = description_of  # an event's description (state, text), as committed now
        self.relay = Relay(
            f"notification target {self.target}",
            outbox,
            self._send,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
        )
        self._apprise: Any = None

    # -- what an event becomes -------------------------------------------------------------------------
    def wanted(self, event: Event) -> bool:
        """Whether the routing sends this event to this target (severity, rule, camera, kind)."""
        config = self.config
        if event.kind not in config.kinds or event.severity not in config.severities:
            return False
        if config.rules and event.rule not in config.rules:
            return False
        camera = self.cameras.get(event.camera)
        tags = camera.tags if camera is not None else []
        return not config.cameras or any(
            selector[4:] in tags if selector.startswith("tag:") else fnmatchcase(event.camera, selector)
            for selector in config.cameras
        )

    def event_messages(self, event: Event, snapshot_jpeg: bytes | None, media_dir: Path | None) -> list[Message]:
        if not self.wanted(event):
            return []
        outcome = self._decide(event, datetime.now(UTC))
        if outcome is not None:
            self._count(outcome)
            return []
        return [Message(self.target, json.dumps(self.compose(event)).encode())]

    def _decide(self, event: Event, at: datetime, *, replaying: bool = False) -> str | None:
        """None: `event` (routed here) goes out at `at`; else why not ("quiet", "over_limit")."""
        if event.severity not in self.config.quiet_except and self.config.quiet_at(at.astimezone().time()):
            return "quiet"
        if not self.limit.admit(event.severity, at.timestamp(), quietly=replaying):
            return "over_limit"
        return None

    def restore(self, events: Sequence[Event]) -> int:
        """Rebuild the limit's window from the events committed within the last hour, oldest first, as
        they were decided then; returns how many of them went out."""
        sent = 0
        for event in events:
            if self.wanted(event) and self._decide(event, event.created_at, replaying=True) is None:
                sent += 1
        return sent

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Any]:
        if self.history is not None:
            since = datetime.now(UTC) - timedelta(seconds=HOUR_S)
            sent = self.restore(await asyncio.to_thread(self.history, since))
            if sent:
                log.info("notification target %s: %d sent within the last hour, before this start", self.target, sent)
        async with self.relay.running() as relay:
            yield relay

    def compose(self, event: Event) -> dict[str, Any]:
        """Title, body, type and attachment of the notification of `event`."""
        camera = self.cameras.get(event.camera)
        where = camera.display_name if camera is not None else event.camera
        title = f"{KIND_WORDS.get(EventKind(event.kind), '')}{event.title} ({where})"
        if event.kind == EventKind.OPEN:
            title = f"[{event.severity.upper()}] {title}"
        confidence = "" if event.confidence is None else f" (P(yes) {event.confidence:.2f})"
        lines = [
            f"Camera: {where}",
            f"Rule: {event.rule} · {event.severity}",
            f"Answer: {event.answer}{confidence}",
        ]
        if event.description:
            lines.append(event.description)
        lines.append(f"Time: {event.frame_at.astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}")
        if self.public_url:
            lines.append(f"Alert: {self.public_url}/alerts/{event.alert_id}")
            if event.clip:
                lines.append(f"Clip: {self.public_url}/api/events/{event.uid}/clip.mp4")
        waits = (
            self.config.wait_for_description_s > 0
            and event.description_state == DescriptionState.PENDING
            and self.description_of is not None
        )
        attach = event.snapshot if self.config.attach and event.snapshot and event.kind != EventKind.RESOLVED else None
        clip = event.clip if self.config.attach_clip and event.clip else None
        wait_s = (camera.clip_post_s if camera is not None else 0.0) + CLIP_GRACE_S
        return {
            "title": title,
            "body": "\n".join(lines),
            "type": APPRISE_TYPES.get(event.severity, "info"),
            "attach": attach,
            "clip": clip,
            "clip_by": time.time() + wait_s,  # wall clock: the wait survives a restart
            "event_id": event.uid,
            "describe_by": time.time() + self.config.wait_for_description_s if waits else None,
            "describe_at": 3,  # the body's line the description goes before (after the answer)
        }

    # -- delivery ----------------------------------------------------------------------------------------
    async def _send(self, message: Message) -> None:
        note = json.loads(message.payload)
        if note.get("describe_by"):  # generated after the alert opened: wait for it (this target only)
            note["body"] = await self._described(note)
        if note.get("clip"):  # written clip_post_s after the alert opened: wait for it (this target only)
            clip = self.media_dir / note["clip"]
            while not await asyncio.to_thread(clip.is_file) and time.time() < note["clip_by"]:
                await asyncio.sleep(CLIP_POLL_S)
        await asyncio.to_thread(self._deliver, note)
        self._count("sent")

    async def _described(self, note: dict[str, Any]) -> str:
        """The body with the open event's description in it, once it came or the wait ran out."""
        assert self.description_of is not None
        while True:
            state, text = await asyncio.to_thread(self.description_of, note["event_id"])
            if state != DescriptionState.PENDING or time.time() >= note["describe_by"]:
                break
            await asyncio.sleep(CLIP_POLL_S)
        if not text:
            text = "Description: none (the model did not answer in time); the alert went out without it."
        lines = note["body"].split("\n")
        return "\n".join([*lines[: note["describe_at"]], text, *lines[note["describe_at"] :]])

    def _deliver(self, note: dict[str, Any]) -> None:
        import apprise

        if self._apprise is None:
            self._apprise = apprise.Apprise()
            if not self._apprise.add(self.url):
                raise NotifyError("Apprise does not understand this URL (see the Apprise URL formats)")
        files = [self.media_dir / note[key] for key in ("attach", "clip") if note.get(key)]
        present = [str(path) for path in files if path.is_file()]  # retention may have taken one: go without
        attachment = apprise.AppriseAttachment(present) if present else None
        sent = self._apprise.notify(title=note["title"], body=note["body"], notify_type=note["type"], attach=attachment)
        if not sent:
            self._count("failed")
            raise NotifyError("the receiver did not take it (Apprise's log says why)")

    def _count(self, outcome: str) -> None:
        if self.counter is not None:
            self.counter.labels(self.target, outcome).inc()
