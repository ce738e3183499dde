"""From an answered rule to an alert event: evaluate, snapshot, record with every output's messages; then
describe.

An alert's open event is committed and delivered at once. A rule's `describe` follow-up is generated
after it, in the background: its answer is set on the open event and published as an `update` event
(while the alert is open), or, when the model is slow, down or stopping, the open event is marked
`none` (it went out, marked without a description). At most `MAX_DESCRIBING` are generated at once;
beyond that an alert is marked `none` at once rather than waiting."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime

from PIL import Image

from streamwatch.alerts.states import Evaluator, Transition
from streamwatch.clips.recorder import ClipRecorder
from streamwatch.config import CameraConfig
from streamwatch.inference.types import Answer
from streamwatch.outputs.base import Output
from streamwatch.pipeline.decision import Decision
from streamwatch.rules.model import Rule
from streamwatch.store.alerts import SavedAlert
from streamwatch.store.alerts import load as load_alerts
from streamwatch.store.events import EventStore, NewEvent, Outgoing
from streamwatch.store.models import Event
from streamwatch.store.windows import STRIP_QUALITY, strip
from streamwatch.vocabulary import DescriptionState

log = logging.getLogger(__name__)

MAX_DESCRIBING = 16  # describe follow-ups generated at once; more alerts opening go out without one
DESCRIBE_DRAIN_S = 10.0  # at stop, how long describe follow-ups in flight may still finish

Describe = Callable[[CameraConfig, Rule, Image.Image], Awaitable[str | None]]


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class AlertPipeline:
    """Owns the evaluator. Every event is committed (row + snapshot + each output's messages) before
    anything is delivered; then every output is told to deliver."""

    def __init__(
        self,
        store: EventStore,
        outputs: Sequence[Output] = (),
        *,
        describe: Describe | None = None,
        evaluator: Evaluator | None = None,
        clips: ClipRecorder | None = None,
    ) -> None:
        self.store = store
        self.clips = clips
        self.outputs = list(outputs)
        self.evaluator = evaluator or Evaluator()
        self._describe = describe
        self._describing: set[asyncio.Task[None]] = set()
        self.events = 0

    def _messages(self, event: Event, snapshot_jpeg: bytes | None) -> Outgoing:
        return {
            output.name: output.event_messages(event, snapshot_jpeg, self.store.snapshot_dir) for output in self.outputs
        }

    def _notify(self) -> None:
        for output in self.outputs:
            output.notify()

    async def transitions(self, decisions: Sequence[Decision]) -> list[Decision]:
        """The decisions made on one frame, each live rule's with the alert transition its answer caused
        (recorded and announced). An event that cannot be recorded is logged; the decision goes on
        without one."""

        async def one(decision: Decision) -> Decision:
            if not decision.live:  # a shadow rule's decision is stored beside the live rule's, never alerted
                return decision
            try:
                event = await self.handle(
                    decision.camera,
                    decision.rule,
                    decision.question,
                    decision.answer,
                    decision.alert,
                    decision.image,
                    decision.frame_at,
                    decision.window,
                )
            except Exception:  # the database or disk failed: say so loudly, keep watching
                log.exception(
                    "camera %s rule %s: could not record the alert event", decision.camera.id, decision.rule.id
                )
                return decision
            return decision if event is None else dataclasses.replace(decision, transition=event.kind)

        return list(await asyncio.gather(*(one(decision) for decision in decisions)))

    async def handle(
        self,
        camera: CameraConfig,
        rule: Rule,
        question: str,
        answer: Answer,
        positive: bool,
        image: Image.Image,
        frame_at: float,
        window: Sequence[Image.Image] = (),
    ) -> Event | None:
        """Feed one answer (and whether it meets the rule's condition) to the evaluator; record and
        announce the event it causes, if any. `window`: the frames a question over several frames was
        asked on (kept with the event, store/windows)."""
        change = self.evaluator.observe(camera.id, rule, positive, frame_at, rule.value_of(answer.text))
        if change is None:
            return None
        transition = change.transition
        # the open event's uid is the alert's id; its updates and its resolve get their own
        uid = change.alert_id if transition is Transition.OPEN else uuid.uuid4().hex
        describing = transition is Transition.OPEN and rule.describe and camera.describe and self._describe is not None
        snapshot = await asyncio.to_thread(jpeg, image)
        window_jpeg = await asyncio.to_thread(lambda: jpeg(strip(window), STRIP_QUALITY)) if window else None
        new = NewEvent(
            uid=uid,
            alert_id=change.alert_id,
            kind=transition.value,
            camera=camera.id,
            rule=rule.id,
            severity=rule.severity,
            title=rule.title,
            question=question,
            answer=answer.text,
            confidence=answer.confidence,
            latency_s=answer.latency_s,
            model=answer.model[:300],
            description=None,
            frame_at=datetime.fromtimestamp(frame_at, UTC),
            held_s=change.held_s,
            previous_answer=change.previous,
            window_frames=len(window) or None,
            description_state=DescriptionState.PENDING if describing else None,
        )
        plan = self.clips.plan(camera, new) if self.clips is not None and transition is Transition.OPEN else None
        if plan is not None:
            new = dataclasses.replace(new, clip=plan.relative)
        published_snapshot = None if transition is Transition.RESOLVED else snapshot

        def messages(event: Event) -> Outgoing:
            return self._messages(event, published_snapshot)

        saved = self.evaluator.saved(camera.id, rule.id)
        event = await asyncio.to_thread(self.store.record, new, snapshot, messages, saved, window_jpeg)
        self.events += 1
        if plan is not None and self.clips is not None:
            self.clips.start(plan, uid)
        self._notify()
        log.info(
            "alert %s: camera=%s rule=%s severity=%s answer=%r p_yes=%s event=%s",
            transition.value,
            camera.id,
            rule.id,
            rule.severity,
            answer.text,
            "-" if answer.confidence is None else f"{answer.confidence:.3f}",
            uid,
        )
        if describing:
            await self._start_describing(camera, rule, image, event)
        return event

    # -- the describe follow-up, after the alert went out -----------------------------------------------
    async def _start_describing(self, camera: CameraConfig, rule: Rule, image: Image.Image, opened: Event) -> None:
        if len(self._describing) >= MAX_DESCRIBING:
            log.warning(
                "alert %s: %d descriptions already being generated; this one goes without", opened.uid, MAX_DESCRIBING
            )
            await asyncio.to_thread(self.store.described, opened.uid, None, DescriptionState.NONE)
            return
        task = asyncio.create_task(self._describe_later(camera, rule, image, opened), name=f"describe-{opened.uid}")
        self._describing.add(task)
        task.add_done_callback(self._describing.discard)

    async def _describe_later(self, camera: CameraConfig, rule: Rule, image: Image.Image, opened: Event) -> None:
        """Ask the follow-up, then set it on the open event and publish it as an update (or say it
        did not come). Whatever fails here is logged; the alert itself has gone out already."""
        assert self._describe is not None
        try:
            text = await self._describe(camera, rule, image)
            if text is None:
                await asyncio.to_thread(self.store.described, opened.uid, None, DescriptionState.NONE)
                return
            still_open = self.evaluator.state(camera.id, rule.id).alert_id == opened.uid
            if not still_open:  # resolved meanwhile: the open event gets it, no update after the resolve
                await asyncio.to_thread(self.store.described, opened.uid, text, DescriptionState.DONE)
                return
            update = dataclasses.replace(
                _as_new(opened),
                uid=uuid.uuid4().hex,
                kind=Transition.UPDATE.value,
                description=text,
                description_state=DescriptionState.DONE,
                clip=None,
                window_frames=None,
            )
            await asyncio.to_thread(
                self.store.record, update, None, lambda event: self._messages(event, None), describes=opened.uid
            )
            self.events += 1
            self._notify()
        except asyncio.CancelledError:
            await asyncio.to_thread(self.store.described, opened.uid, None, DescriptionState.NONE)
            raise
        except Exception:
            log.exception("alert %s: its description could not be recorded", opened.uid)
            with contextlib.suppress(Exception):  # not left "pending": the next start would settle it anyway
                await asyncio.to_thread(self.store.described, opened.uid, None, DescriptionState.NONE)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AlertPipeline]:
        """Inside: describe follow-ups run in the background; at exit those in flight get
        DESCRIBE_DRAIN_S to finish, the rest are marked without a description."""
        try:
            yield self
        finally:
            if self._describing:
                _done, late = await asyncio.wait(set(self._describing), timeout=DESCRIBE_DRAIN_S)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)

    # -- across restarts and rule changes -------------------------------------------------------------
    async def restore(self, watched: set[tuple[str, str]], owns: Callable[[str], bool]) -> int:
        """At start: continue the alerts a previous run left open (and its cooldowns) for the cameras this
        instance `owns`; resolve the open ones that are no longer watched. Returns how many stay open."""
        for saved in await asyncio.to_thread(load_alerts, self.store.db):
            if owns(saved.camera):
                self.evaluator.restore(saved)
        if self.clips is not None:
            await self.clips.settle(owns)
        settled = await asyncio.to_thread(self.store.settle_descriptions, owns)
        if settled:
            log.info("%d alerts' descriptions were still being generated at the last stop: they went without", settled)
        await self.resolve_unwatched(watched)
        still = [key for key in self.evaluator.open_alerts() if key in watched]
        for camera, rule in still:
            log.info(
                "alert continues after restart: camera=%s rule=%s alert=%s",
                camera,
                rule,
                self.evaluator.state(camera, rule).alert_id,
            )
        return len(still)

    async def resolve_unwatched(self, watched: set[tuple[str, str]]) -> None:
        """Resolve open alerts whose camera x rule is no longer watched (the rule was removed, disabled
        or retargeted; the camera disabled or removed): a `resolved` event and the state OFF, so nothing
        stays ON for ever in history, on MQTT or in Home Assistant."""
        for camera, rule in [key for key in self.evaluator.open_alerts() if key not in watched]:
            alert_id = self.evaluator.close(camera, rule)
            await asyncio.to_thread(self._record_unwatched, camera, rule, alert_id)
            self.events += 1
            log.info("alert resolved: camera=%s rule=%s is no longer watched (alert %s)", camera, rule, alert_id)
        self._notify()

    def _record_unwatched(self, camera: str, rule: str, alert_id: str | None) -> None:
        opened = self.store.get(alert_id) if alert_id else None
        uid = uuid.uuid4().hex
        now = time.time()
        new = NewEvent(
            uid=uid,
            alert_id=alert_id or uid,
            kind=Transition.RESOLVED.value,
            camera=camera,
            rule=rule,
            severity=opened.severity if opened else "info",
            title=opened.title if opened else rule,
            question=opened.question if opened else "",
            answer=NO_LONGER_WATCHED,
            confidence=None,
            latency_s=0.0,
            model=opened.model if opened else "",
            description=None,
            frame_at=datetime.fromtimestamp(now, UTC),
        )
        closed = SavedAlert(camera, rule, False, None, opened.frame_at.timestamp() if opened else now, now, now)

        self.store.record(new, None, lambda event: self._messages(event, None), closed)


def _as_new(event: Event) -> NewEvent:
    """A recorded event's fields, to base another event on."""
    fields = {field.name: getattr(event, field.name) for field in dataclasses.fields(NewEvent)}
    return NewEvent(**fields)


NO_LONGER_WATCHED = "(no longer watched)"
