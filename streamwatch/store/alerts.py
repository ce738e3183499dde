"""Each alert's current state in the database: saved with the event that changed it, read at start."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from streamwatch.store.db import Database
from streamwatch.store.models import AlertRecord


@dataclass(frozen=True)
class SavedAlert:
    """One camera x rule alert as the evaluator left it (times are frame times, epoch seconds)."""

    camera: str
    rule: str
    open: bool
    alert_id: str | None
    opened_at: float
    last_event_at: float
    cooldown_until: float


def save(session: Session, alert: SavedAlert) -> None:
    """Insert or update the alert's row inside the caller's transaction."""
    record = session.get(AlertRecord, (alert.camera, alert.rule))
    if record is None:
        record = AlertRecord(camera=alert.camera, rule=alert.rule)
        session.add(record)
    record.open, record.alert_id = alert.open, alert.alert_id
    record.opened_at, record.last_event_at, record.cooldown_until = (
        alert.opened_at,
        alert.last_event_at,
        alert.cooldown_until,
    )


def load(database: Database) -> list[SavedAlert]:
    """Every saved alert (open ones and those cooling down or closed)."""
    with database.session() as session:
        rows = session.scalars(select(AlertRecord).order_by(AlertRecord.camera, AlertRecord.rule))
        return [
            SavedAlert(r.camera, r.rule, r.open, r.alert_id, r.opened_at, r.last_event_at, r.cooldown_until)
            for r in rows
        ]
