"""Shadow runs of a candidate (adapter, thresholds) and the alerts each would have opened, their frames as
JPEG files under `<snapshot_dir>/shadow/`. Bounded: at most MAX_ALERTS kept per run (later ones are only
counted) and the newest KEEP_RUNS runs (older runs, their alerts and frames are deleted)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from streamwatch.store.db import Database
from streamwatch.store.media import write_atomically
from streamwatch.store.models import ShadowAlert, ShadowRun

FOLDER = "shadow"  # under snapshot_dir; the disk cap leaves it alone (bounded here)
MAX_ALERTS = 500  # per run
KEEP_RUNS = 10


@dataclass(frozen=True)
class Run:
    id: int
    started_at: datetime
    by: str
    job_id: str | None
    adapter: str | None
    thresholds: dict[str, float]
    stopped_at: datetime | None
    stop_reason: str | None
    counts: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "by": self.by,
            "job_id": self.job_id,
            "adapter": self.adapter,
            "thresholds": self.thresholds,
            "stopped_at": None if self.stopped_at is None else self.stopped_at.isoformat(),
            "stop_reason": self.stop_reason,
            "counts": self.counts,
        }


@dataclass(frozen=True)
class WouldBeAlert:
    id: int
    run_id: int
    at: datetime
    camera: str
    rule: str
    p_yes: float
    live_p_yes: float | None
    live_open: bool
    snapshot: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "camera": self.camera,
            "rule": self.rule,
            "p_yes": self.p_yes,
            "live_p_yes": self.live_p_yes,
            "live_open": self.live_open,
            "snapshot": None if self.snapshot is None else f"/api/shadow/alerts/{self.id}/snapshot",
        }


def _run(row: ShadowRun) -> Run:
    return Run(
        row.id,
        row.started_at,
        row.by,
        row.job_id,
        row.adapter,
        json.loads(row.thresholds),
        row.stopped_at,
        row.stop_reason,
        json.loads(row.counts or "{}"),
    )


def _alert(row: ShadowAlert) -> WouldBeAlert:
    return WouldBeAlert(
        row.id, row.run_id, row.at, row.camera, row.rule, row.p_yes, row.live_p_yes, row.live_open, row.snapshot
    )


class ShadowRuns:
    def __init__(self, database: Database, snapshot_dir: Path, *, max_alerts: int = MAX_ALERTS) -> None:
        self.db, self.snapshot_dir, self.max_alerts = database, snapshot_dir, max_alerts

    def start(self, *, by: str, job_id: str | None, adapter: str | None, thresholds: dict[str, float]) -> Run:
        """A new run (the caller made sure none is active); the oldest past KEEP_RUNS go."""
        with self.db.session() as session, session.begin():
            row = ShadowRun(by=by[:200], job_id=job_id, adapter=adapter, thresholds=json.dumps(thresholds), counts="{}")
            session.add(row)
            session.flush()
            run = _run(row)
        self._prune()
        return run

    def active(self) -> Run | None:
        with self.db.session() as session:
            row = session.scalars(select(ShadowRun).where(ShadowRun.stopped_at.is_(None)).order_by(ShadowRun.id.desc()))
            found = row.first()
            return None if found is None else _run(found)

    def get(self, run_id: int) -> Run | None:
        with self.db.session() as session:
            row = session.get(ShadowRun, run_id)
            return None if row is None else _run(row)

    def runs(self, limit: int = KEEP_RUNS) -> list[Run]:
        with self.db.session() as session:
            return [_run(r) for r in session.scalars(select(ShadowRun).order_by(ShadowRun.id.desc()).limit(limit))]

    def save_counts(self, run_id: int, counts: dict[str, Any]) -> None:
        with self.db.session() as session, session.begin():
            row = session.get(ShadowRun, run_id)
            if row is not None:
                row.counts = json.dumps(counts)

    def stop(self, run_id: int, reason: str, counts: dict[str, Any] | None = None) -> None:
        with self.db.session() as session, session.begin():
            row = session.get(ShadowRun, run_id)
            if row is not None and row.stopped_at is None:
                row.stopped_at, row.stop_reason = datetime.now(UTC), reason[:1000]
                if counts is not None:
                    row.counts = json.dumps(counts)

    def record(self, alert: WouldBeAlert, jpeg: bytes | None) -> bool:
        """Keep one would-be alert (and its frame); False once the run has MAX_ALERTS (only counted then)."""
        with self.db.session() as session:
            kept = session.scalar(
                select(func.count()).select_from(ShadowAlert).where(ShadowAlert.run_id == alert.run_id)
            )
        if (kept or 0) >= self.max_alerts:
            return False
        relative = None
        if jpeg is not None:
            name = f"{alert.at.strftime('%Y%m%dT%H%M%S%f')}-{alert.camera}-{alert.rule}.jpg"
            relative = (Path(FOLDER) / str(alert.run_id) / name).as_posix()
            write_atomically(self.snapshot_dir / relative, jpeg)
        with self.db.session() as session, session.begin():
            session.add(
                ShadowAlert(
                    run_id=alert.run_id,
                    at=alert.at,
                    camera=alert.camera,
                    rule=alert.rule,
                    p_yes=alert.p_yes,
                    live_p_yes=alert.live_p_yes,
                    live_open=alert.live_open,
                    snapshot=relative,
                )
            )
        return True

    def alerts(self, run_id: int, limit: int = 100) -> list[WouldBeAlert]:
        """The run's would-be alerts, newest first."""
        query = select(ShadowAlert).where(ShadowAlert.run_id == run_id).order_by(ShadowAlert.id.desc()).limit(limit)
        with self.db.session() as session:
            return [_alert(row) for row in session.scalars(query)]

    def snapshot(self, alert_id: int) -> Path | None:
        with self.db.session() as session:
            row = session.get(ShadowAlert, alert_id)
            if row is None or row.snapshot is None:
                return None
        path = self.snapshot_dir / row.snapshot
        return path if path.is_file() else None

    def _prune(self) -> None:
        with self.db.session() as session, session.begin():
            ids = list(session.scalars(select(ShadowRun.id).order_by(ShadowRun.id.desc()).offset(KEEP_RUNS)))
            if not ids:
                return
            session.execute(delete(ShadowAlert).where(ShadowAlert.run_id.in_(ids)))
            session.execute(delete(ShadowRun).where(ShadowRun.id.in_(ids)))
        for run_id in ids:
            shutil.rmtree(self.snapshot_dir / FOLDER / str(run_id), ignore_errors=True)
