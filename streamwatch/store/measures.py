"""The latest `streamwatch eval` figures per rule x camera, for the rules page and API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, select

from streamwatch.store.db import Database
from streamwatch.store.models import RuleMeasure, utcnow

FIELDS = (
    "examples",
    "positives",
    "threshold",
    "precision",
    "recall",
    "f1",
    "suggested_threshold",
    "false_alerts_per_day",
    "false_alert_open_share",
)


def save(database: Database, model: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Replace the figures of every rule x camera in `rows` (an eval report's rows); returns how many."""
    now, count = utcnow(), 0
    with database.session() as session, session.begin():
        for row in rows:
            session.execute(
                delete(RuleMeasure).where(RuleMeasure.rule == row["rule"], RuleMeasure.camera == row["camera"])
            )
            values = {"examples": row["n"]} | {name: row[name] for name in FIELDS if name != "examples"}
            session.add(RuleMeasure(rule=row["rule"], camera=row["camera"], model=model, measured_at=now, **values))
            count += 1
    return count


def load(database: Database) -> dict[str, list[dict[str, Any]]]:
    """By rule id: its figures per camera, as JSON-ready dicts."""
    found: dict[str, list[dict[str, Any]]] = {}
    with database.session() as session:
        for measure in session.scalars(select(RuleMeasure).order_by(RuleMeasure.rule, RuleMeasure.camera)):
            found.setdefault(measure.rule, []).append(
                {"camera": measure.camera, "model": measure.model, "measured_at": measure.measured_at.isoformat()}
                | {name: getattr(measure, name) for name in FIELDS}
            )
    return found
