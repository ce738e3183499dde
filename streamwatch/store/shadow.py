"""Shadow rules' decisions (mode = "shadow"): stored as they are made, counted against the live rule's
answers on the same frames, pruned with the events (storage.retention_days) and to at most MAX_ROWS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, case, delete, func, select

from streamwatch.store.db import Database
from streamwatch.store.models import ShadowDecision

MAX_ROWS = 1_000_000  # about 100 MB: the oldest go first


@dataclass(frozen=True)
class NewShadowDecision:
    at: datetime
    camera: str
    rule: str
    shadows: str | None
    answer: str
    p_yes: float | None
    alert: bool
    live_answer: str | None = None
    live_p_yes: float | None = None
    live_alert: bool | None = None


class ShadowStore:
    def __init__(self, database: Database, max_rows: int = MAX_ROWS) -> None:
        self.db, self.max_rows = database, max_rows

    def record(self, decision: NewShadowDecision) -> None:
        values = {**decision.__dict__, "answer": decision.answer[:200]}
        if decision.live_answer is not None:
            values["live_answer"] = decision.live_answer[:200]
        with self.db.session() as session, session.begin():
            session.add(ShadowDecision(**values))

    def agreement(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Per camera x shadow rule: decisions stored, and of those with a live answer beside them, how
        often both alerted, only the live rule, only the shadow rule, neither."""

        def count(condition: Any) -> Any:
            return func.sum(case((condition, 1), else_=0).cast(Integer))

        paired = ShadowDecision.live_alert.is_not(None)
        query = (
            select(
                ShadowDecision.camera,
                ShadowDecision.rule,
                ShadowDecision.shadows,
                func.count(),
                count(paired),
                count(paired & ShadowDecision.alert & ShadowDecision.live_alert.is_(True)),
                count(paired & ~ShadowDecision.alert & ShadowDecision.live_alert.is_(True)),
                count(paired & ShadowDecision.alert & ShadowDecision.live_alert.is_(False)),
                count(paired & ~ShadowDecision.alert & ShadowDecision.live_alert.is_(False)),
                func.min(ShadowDecision.at),
                func.max(ShadowDecision.at),
            )
            .group_by(ShadowDecision.camera, ShadowDecision.rule, ShadowDecision.shadows)
            .order_by(ShadowDecision.rule, ShadowDecision.camera)
        )
        if since is not None:
            query = query.where(ShadowDecision.at >= since)
        keys = ("camera", "rule", "shadows", "decisions", "paired", "both", "live_only", "shadow_only", "neither")
        with self.db.session() as session:
            rows = session.execute(query).all()
        found = []
        for row in rows:
            item = dict(zip(keys, row[:9], strict=True))
            item |= {key: int(item[key] or 0) for key in keys[3:]}
            first, last = row[9], row[10]
            item["first"] = None if first is None else first.isoformat()
            item["last"] = None if last is None else last.isoformat()
            found.append(item)
        return found

    def prune(self, cutoff: datetime) -> int:
        """Delete decisions older than `cutoff`, then the oldest beyond `max_rows`; returns how many."""
        with self.db.session() as session, session.begin():
            before = session.scalar(select(func.count()).select_from(ShadowDecision)) or 0
            session.execute(delete(ShadowDecision).where(ShadowDecision.at < cutoff))
            total = session.scalar(select(func.count()).select_from(ShadowDecision)) or 0
            if total > self.max_rows:
                last_id = session.scalar(
                    select(ShadowDecision.id).order_by(ShadowDecision.id).offset(total - self.max_rows - 1).limit(1)
                )
                session.execute(delete(ShadowDecision).where(ShadowDecision.id <= last_id))
            after = session.scalar(select(func.count()).select_from(ShadowDecision)) or 0
        return int(before - after)
