"""Event history: record an event with its snapshot and outbox messages in one transaction; query; prune."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from streamwatch.store import outbox
from streamwatch.store.alerts import SavedAlert, save
from streamwatch.store.db import Database
from streamwatch.store.labels import FOLDER as LABELS_FOLDER
from streamwatch.store.media import write_atomically
from streamwatch.store.message import Message
from streamwatch.store.models import Event, utcnow
from streamwatch.store.shadow_runs import FOLDER as SHADOW_FOLDER
from streamwatch.store.windows import beside
from streamwatch.vocabulary import DescriptionState, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewEvent:
    uid: str
    alert_id: str
    kind: str
    camera: str
    rule: str
    severity: str
    title: str
    question: str
    answer: str
    confidence: float | None
    latency_s: float
    model: str
    description: str | None
    frame_at: datetime
    held_s: float | None = None
    previous_answer: str | None = None
    clip: str | None = None  # where its clip will be written (clip_relative), for open events of cameras with clips
    window_frames: int | None = None  # a question over several frames: how many (their strip: store/windows)
    description_state: str | None = None  # DescriptionState: a `describe` answer pending, done or none


@dataclass(frozen=True)
class EventFilter:
    """Which events: every field that is set must match."""

    camera: str | None = None
    rule: str | None = None
    kind: str | None = None
    severity: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reviewed: bool | None = None
    verdict: str | None = None


def _filtered(query: Select[Any], where: EventFilter) -> Select[Any]:
    for column, value in (
        (Event.camera, where.camera),
        (Event.rule, where.rule),
        (Event.kind, where.kind),
        (Event.severity, where.severity),
        (Event.verdict, where.verdict),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(Event.created_at >= where.since)
    if where.until is not None:
        query = query.where(Event.created_at < where.until)
    if where.reviewed is not None:
        query = query.where(Event.reviewed_at.is_not(None) if where.reviewed else Event.reviewed_at.is_(None))
    return query


Outgoing = Mapping[str, Sequence[Message]]  # each output's messages for one event, by the output's name


class EventStore:
    """Events in the database, snapshots as JPEG files under `snapshot_dir`."""

    def __init__(self, database: Database, snapshot_dir: Path, *, owner: str = "") -> None:
        self.db = database
        self.snapshot_dir = snapshot_dir
        self.owner = owner  # of the outbox messages it commits (store/outbox.py)

    def record(
        self,
        new: NewEvent,
        snapshot_jpeg: bytes | None = None,
        messages: Callable[[Event], Outgoing] = lambda _event: {},
        alert: SavedAlert | None = None,
        window_jpeg: bytes | None = None,
        describes: str | None = None,
    ) -> Event:
        """Write the snapshot (and the strip of frames a question over several frames saw), then commit
        the event, its outbox messages and the alert's new state together: either the event exists, its
        messages will be delivered and the state says so after a restart, or none of it happened.
        `describes`: the uid of the open event whose description this event brings (set with it)."""
        relative = self._write_snapshot(new, snapshot_jpeg) if snapshot_jpeg is not None else None
        if relative is not None and window_jpeg is not None and new.window_frames:
            write_atomically(self.snapshot_dir / beside(relative), window_jpeg)
        else:
            new = dataclasses.replace(new, window_frames=None)
        with self.db.session() as session, session.begin():
            event = Event(**new.__dict__, snapshot=relative)
            session.add(event)
            session.flush()
            for sink, outgoing in messages(event).items():
                session.add_all(outbox.row(message, owner=self.owner, sink=sink) for message in outgoing)
            if alert is not None:
                save(session, alert)
            if describes is not None:
                _set_description(session, describes, new.description, new.description_state)
        return event

    def described(self, uid: str, text: str | None, state: str) -> None:
        """Set the description (and its state) of the open event `uid`, with no event of its own."""
        with self.db.session() as session, session.begin():
            _set_description(session, uid, text, state)

    def settle_descriptions(self, owns: Callable[[str], bool]) -> int:
        """At start: descriptions a previous run was still generating for the cameras this instance `owns`
        will not come; marked so. Returns how many."""
        with self.db.session() as session, session.begin():
            pending = session.execute(
                select(Event.uid, Event.camera).where(Event.description_state == DescriptionState.PENDING)
            ).all()
            uids = [uid for uid, camera in pending if owns(camera)]
            for uid in uids:
                _set_description(session, uid, None, DescriptionState.NONE)
        return len(uids)

    @staticmethod
    def media_relative(new: NewEvent, suffix: str) -> str:
        """Where an event's files go under `snapshot_dir`: camera/date/uid.jpg (and .mp4 for its clip)."""
        return (Path(new.camera) / new.frame_at.strftime("%Y-%m-%d") / f"{new.uid}{suffix}").as_posix()

    def _write_snapshot(self, new: NewEvent, jpeg: bytes) -> str:
        relative = self.media_relative(new, ".jpg")
        write_atomically(self.snapshot_dir / relative, jpeg)
        return relative

    def snapshot_path(self, event: Event) -> Path | None:
        return None if event.snapshot is None else self.snapshot_dir / event.snapshot

    def clip_path(self, event: Event) -> Path | None:
        """The event's MP4 once it is written (None while it is recorded, or without one)."""
        return None if event.clip is None or event.clip_s is None else self.snapshot_dir / event.clip

    def clip_written(self, uid: str, seconds: float | None) -> None:
        """The clip of event `uid` is written (its length), or could not be (None: the event names none)."""
        with self.db.session() as session, session.begin():
            event = session.scalar(select(Event).where(Event.uid == uid))
            if event is not None:
                if seconds is None:
                    event.clip = None
                event.clip_s = seconds

    def unfinished_clips(self) -> list[tuple[str, str, str]]:
        """(uid, camera, clip) of the events whose clip was named but never marked written or lost."""
        query = select(Event.uid, Event.camera, Event.clip).where(Event.clip.is_not(None), Event.clip_s.is_(None))
        with self.db.session() as session:
            return [(uid, camera, clip) for uid, camera, clip in session.execute(query).all() if clip]

    def get(self, uid: str) -> Event | None:
        with self.db.session() as session:
            return session.scalar(select(Event).where(Event.uid == uid))

    def list(self, where: EventFilter | None = None, *, limit: int = 100, offset: int = 0) -> list[Event]:
        """Newest first."""
        query = _filtered(select(Event), where or EventFilter())
        query = query.order_by(Event.created_at.desc(), Event.id.desc()).limit(limit).offset(offset)
        with self.db.session() as session:
            return list(session.scalars(query))

    def count(self, where: EventFilter | None = None) -> int:
        query = _filtered(select(func.count()).select_from(Event), where or EventFilter())
        with self.db.session() as session:
            return int(session.scalar(query) or 0)

    def facets(self) -> tuple[Sequence[str], Sequence[str]]:
        """The cameras and rules that appear in the history (for filter menus)."""
        with self.db.session() as session:
            cameras = sorted(session.scalars(select(Event.camera).distinct()))
            rules = sorted(session.scalars(select(Event.rule).distinct()))
        return cameras, rules

    def review(self, uid: str, verdict: Verdict | None, note: str | None) -> Event | None:
        """Mark an event reviewed: a verdict (None: just seen), optional note."""
        if verdict is not None and verdict not in set(Verdict):
            raise ValueError(f"verdict must be one of {', '.join(Verdict)} or None")
        with self.db.session() as session, session.begin():
            event = session.scalar(select(Event).where(Event.uid == uid))
            if event is None:
                return None
            event.verdict, event.note, event.reviewed_at = verdict, note or None, utcnow()
        return event

    def prune(self, older_than: datetime) -> tuple[int, int]:
        """Delete events created before `older_than` and their snapshot and clip files; returns (rows, files)."""
        with self.db.session() as session, session.begin():
            columns = select(Event.id, Event.snapshot, Event.clip, Event.window_frames)
            old = list(session.execute(columns.where(Event.created_at < older_than)))
            session.execute(delete(Event).where(Event.id.in_([row.id for row in old])))
        names = [
            (row.snapshot, row.clip, beside(row.snapshot) if row.snapshot and row.window_frames else None)
            for row in old
        ]
        files = sum(self._delete_file(name) for row in names for name in row if name)
        return len(old), files

    def cap_disk(self, max_bytes: int) -> tuple[int, int]:
        """Keep the files under `snapshot_dir` within `max_bytes`: the oldest clips go first, then the
        oldest snapshots; their events stay and name them no more. Returns (files deleted, bytes freed)."""
        files = _media_files(self.snapshot_dir)
        total = sum(size for _mtime, size, _path in files)
        if total <= max_bytes:
            return 0, 0
        ordered = sorted(files, key=lambda f: (f[2].suffix != ".mp4", f[0]))  # clips first, oldest first
        gone: list[str] = []
        freed = 0
        for _mtime, size, path in ordered:
            if total - freed <= max_bytes:
                break
            relative = path.relative_to(self.snapshot_dir).as_posix()
            if self._delete_file(relative):
                gone.append(relative)
                freed += size
        with self.db.session() as session, session.begin():
            for chunk in range(0, len(gone), 500):
                names = gone[chunk : chunk + 500]
                session.execute(update(Event).where(Event.clip.in_(names)).values(clip=None, clip_s=None))
                session.execute(update(Event).where(Event.snapshot.in_(names)).values(snapshot=None))
        return len(gone), freed

    def _delete_file(self, relative: str) -> bool:
        path = self.snapshot_dir / relative
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _remove_empty_parents(path.parent, self.snapshot_dir)
        return True


def _set_description(session: Session, uid: str, text: str | None, state: str | None) -> None:
    session.execute(update(Event).where(Event.uid == uid).values(description=text, description_state=state))


def description_of(database: Database, uid: str) -> tuple[str | None, str | None]:
    """(state, text) of an event's description; (None, None) when there is no such event."""
    with database.session() as session:
        row = session.execute(select(Event.description_state, Event.description).where(Event.uid == uid)).first()
    return (row[0], row[1]) if row is not None else (None, None)


def committed_since(database: Database, since: datetime, owns: Callable[[str], bool]) -> list[Event]:
    """The events committed since `since` of the cameras `owns` says are this instance's, oldest first."""
    query = select(Event).where(Event.created_at >= since).order_by(Event.created_at, Event.id)
    with database.session() as session:
        return [event for event in session.scalars(query) if owns(event.camera)]


def _media_files(root: Path) -> list[tuple[float, int, Path]]:
    """(modified, bytes, path) of every snapshot and clip under `root`."""
    found: list[tuple[float, int, Path]] = []
    for folder, dirs, names in os.walk(root):
        if Path(folder) == root:  # label and shadow frames are bounded by count (their stores), not deleted here
            dirs[:] = [name for name in dirs if name not in (LABELS_FOLDER, SHADOW_FOLDER)]
        for name in names:
            if name.endswith((".jpg", ".mp4")):
                path = Path(folder) / name
                try:
                    stat = path.stat()
                except OSError:
                    continue
                found.append((stat.st_mtime, stat.st_size, path))
    return found


def _remove_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone
            return
        folder = folder.parent
