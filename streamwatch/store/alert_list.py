"""Alerts as one item each: an alert's events (open, updates, resolved; they share its `alert_id`, the
uid of its open event) read together, with when it opened and ended, how long it lasted, its peak
confidence, its first and last snapshot and its clip. An operator's review of an alert is the review
of its open event."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, case, func, select

from streamwatch.store.db import Database
from streamwatch.store.models import Event
from streamwatch.store.search import matching
from streamwatch.vocabulary import EventKind

STATES = ("open", "resolved")


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts: every field that is set must match (`since`/`until`: when the alert opened)."""

    camera: str | None = None
    rule: str | None = None
    severity: str | None = None
    state: str | None = None  # open | resolved
    since: datetime | None = None
    until: datetime | None = None
    reviewed: bool | None = None
    verdict: str | None = None
    q: str | None = None  # words that must appear in one of its events (store/search.py)


@dataclass(frozen=True)
class Alert:
    alert_id: str
    events: list[Event]  # oldest first

    @property
    def first(self) -> Event:
        """The open event where it is still stored (retention may have taken it), else the oldest."""
        return next((e for e in self.events if e.kind == EventKind.OPEN), self.events[0])

    @property
    def resolved(self) -> Event | None:
        return next((e for e in self.events if e.kind == EventKind.RESOLVED), None)

    @property
    def state(self) -> str:
        return "resolved" if self.resolved is not None else "open"

    @property
    def opened_at(self) -> datetime:
        return self.first.created_at

    @property
    def last_at(self) -> datetime:
        return self.events[-1].created_at

    def duration_s(self, now: datetime | None = None) -> float:
        """Open to resolved; an open alert: until `now`."""
        end = self.resolved.created_at if self.resolved is not None else (now or datetime.now(UTC))
        return max(0.0, (end - self.opened_at).total_seconds())

    @property
    def peak_confidence(self) -> float | None:
        scores = [e.confidence for e in self.events if e.kind != EventKind.RESOLVED and e.confidence is not None]
        return max(scores) if scores else None

    @property
    def last_snapshot(self) -> Event | None:
        """The latest event with a snapshot (the first one's, while nothing updated it)."""
        return next((e for e in reversed(self.events) if e.snapshot and e.kind != EventKind.RESOLVED), None)

    @property
    def clip(self) -> Event | None:
        return next((e for e in self.events if e.clip), None)


class AlertList:
    def __init__(self, database: Database) -> None:
        self.db = database

    def _grouped(self, where: AlertFilter) -> Select[str, datetime]:
        opened = func.min(Event.created_at)
        resolved = func.max(case((Event.kind == EventKind.RESOLVED.value, 1), else_=0))
        query = select(Event.alert_id, opened.label("opened")).group_by(Event.alert_id)
        for column, value in ((Event.camera, where.camera), (Event.rule, where.rule), (Event.severity, where.severity)):
            if value is not None:
                query = query.where(column == value)
        if where.q:
            condition = matching(self.db.engine.dialect.name, where.q)
            if condition is not None:
                query = query.where(Event.alert_id.in_(select(Event.alert_id).where(condition)))
        if where.reviewed is not None or where.verdict is not None:
            reviewed = select(Event.uid).where(Event.kind == EventKind.OPEN.value)
            if where.reviewed is not None:
                at = Event.reviewed_at
                reviewed = reviewed.where(at.is_not(None) if where.reviewed else at.is_(None))
            if where.verdict is not None:
                reviewed = reviewed.where(Event.verdict == where.verdict)
            query = query.where(Event.alert_id.in_(reviewed))
        if where.since is not None:
            query = query.having(opened >= where.since)
        if where.until is not None:
            query = query.having(opened < where.until)
        if where.state is not None:
            query = query.having(resolved == (1 if where.state == "resolved" else 0))
        return query

    def list(self, where: AlertFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[Alert]:
        """Newest first (by when they opened)."""
        grouped = self._grouped(where or AlertFilter()).subquery()
        page = select(grouped.c.alert_id).order_by(grouped.c.opened.desc(), grouped.c.alert_id.desc())
        with self.db.session() as session:
            ids = list(session.scalars(page.limit(limit).offset(offset)))
            return self._alerts(session, ids)

    def count(self, where: AlertFilter | None = None) -> int:
        grouped = self._grouped(where or AlertFilter()).subquery()
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(grouped)) or 0)

    def get(self, alert_id: str) -> Alert | None:
        with self.db.session() as session:
            found = self._alerts(session, [alert_id])
        return found[0] if found else None

    @staticmethod
    def _alerts(session: Any, ids: builtins.list[str]) -> builtins.list[Alert]:
        if not ids:
            return []
        rows = session.scalars(select(Event).where(Event.alert_id.in_(ids)).order_by(Event.created_at, Event.id)).all()
        events: dict[str, builtins.list[Event]] = {alert_id: [] for alert_id in ids}
        for event in rows:
            events[event.alert_id].append(event)
        return [Alert(alert_id, events[alert_id]) for alert_id in ids if events[alert_id]]


def alert_payload(alert: Alert) -> dict[str, Any]:
    """An alert as JSON (REST API, `streamwatch events search --json`), its review being its first event's."""
    first, resolved = alert.first, alert.resolved
    return {
        "alert_id": alert.alert_id,
        "camera": first.camera,
        "rule": first.rule,
        "title": first.title,
        "severity": first.severity,
        "state": alert.state,
        "opened_at": alert.opened_at.isoformat(),
        "last_at": alert.last_at.isoformat(),
        "resolved_at": resolved.created_at.isoformat() if resolved else None,
        "duration_s": round(alert.duration_s(), 1),
        "events": len(alert.events),
        "peak_confidence": alert.peak_confidence,
        "question": first.question,
        "answer": first.answer,
        "description": next((e.description for e in alert.events if e.description), None),
        "verdict": first.verdict,
        "note": first.note,
        "reviewed_at": first.reviewed_at.isoformat() if first.reviewed_at else None,
    }
