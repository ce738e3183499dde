"""Label requests in the database, their frames as JPEG files under `<snapshot_dir>/labels/`.

Bounded: at most `max_pending` unlabelled requests (the oldest go first, with their frames) and
`max_labelled` labelled ones (the oldest go first, logged: they are training data).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from streamwatch.store.db import Database
from streamwatch.store.media import write_atomically
from streamwatch.store.models import LabelRequest, utcnow
from streamwatch.store.windows import beside
from streamwatch.vocabulary import Label

log = logging.getLogger(__name__)

FOLDER = "labels"  # under snapshot_dir; the disk cap leaves it alone (its size is bounded here)
STATES = {"pending": False, "labelled": True, "all": None}  # a listing's state -> `list(labelled=...)`


@dataclass(frozen=True)
class NewLabelRequest:
    uid: str
    camera: str
    rule: str
    question: str
    model: str
    answer: str
    confidence: float | None
    threshold: float
    reason: str
    frame_at: datetime
    window_frames: int | None = None  # a question over several frames: how many (their strip: store/windows)


def label_payload(item: LabelRequest) -> dict[str, Any]:
    """A label request as JSON (REST API, `streamwatch labels --json`)."""
    return {
        "id": item.uid,
        "camera": item.camera,
        "rule": item.rule,
        "question": item.question,
        "model": item.model,
        "answer": item.answer,
        "confidence": item.confidence,
        "threshold": item.threshold,
        "reason": item.reason,
        "frame_at": item.frame_at.isoformat(),
        "created_at": item.created_at.isoformat(),
        "label": item.label,
        "labelled_at": item.labelled_at.isoformat() if item.labelled_at else None,
        "window_frames": item.window_frames,
    }


class LabelStore:
    def __init__(self, database: Database, snapshot_dir: Path, *, max_pending: int, max_labelled: int) -> None:
        self.db = database
        self.snapshot_dir = snapshot_dir
        self.max_pending, self.max_labelled = max_pending, max_labelled

    def add(self, new: NewLabelRequest, jpeg: bytes, window_jpeg: bytes | None = None) -> LabelRequest:
        """Write the frame (and the strip of frames a question over several frames saw), then the
        request; then drop the oldest pending ones past `max_pending`."""
        relative = (Path(FOLDER) / new.camera / new.frame_at.strftime("%Y-%m-%d") / f"{new.uid}.jpg").as_posix()
        write_atomically(self.snapshot_dir / relative, jpeg)
        if window_jpeg is not None and new.window_frames:
            write_atomically(self.snapshot_dir / beside(relative), window_jpeg)
        else:
            new = dataclasses.replace(new, window_frames=None)
        with self.db.session() as session, session.begin():
            request = LabelRequest(**new.__dict__, frame=relative)
            session.add(request)
        self._bound(pending=True)
        return request

    def get(self, uid: str) -> LabelRequest | None:
        with self.db.session() as session:
            return session.scalar(select(LabelRequest).where(LabelRequest.uid == uid))

    def list(
        self,
        *,
        labelled: bool | None = None,
        camera: str | None = None,
        rule: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[LabelRequest]:
        """Pending ones oldest first (the queue); otherwise newest first."""
        query = select(LabelRequest)
        if labelled is not None:
            column = LabelRequest.label
            query = query.where(column.is_not(None) if labelled else column.is_(None))
        if camera is not None:
            query = query.where(LabelRequest.camera == camera)
        if rule is not None:
            query = query.where(LabelRequest.rule == rule)
        order = LabelRequest.id.asc() if labelled is False else LabelRequest.id.desc()
        with self.db.session() as session:
            return list(session.scalars(query.order_by(order).limit(limit).offset(offset)))

    def count(self, *, labelled: bool | None = None) -> int:
        query = select(func.count()).select_from(LabelRequest)
        if labelled is not None:
            query = query.where(LabelRequest.label.is_not(None) if labelled else LabelRequest.label.is_(None))
        with self.db.session() as session:
            return int(session.scalar(query) or 0)

    def set_label(self, uid: str, label: Label) -> LabelRequest | None:
        """An operator's answer (yes / no / skip); None for an unknown request."""
        with self.db.session() as session, session.begin():
            request = session.scalar(select(LabelRequest).where(LabelRequest.uid == uid))
            if request is None:
                return None
            request.label, request.labelled_at = Label(label).value, utcnow()
        self._bound(pending=False)
        return request

    def frame_path(self, request: LabelRequest) -> Path:
        return self.snapshot_dir / request.frame

    def window_path(self, request: LabelRequest) -> Path | None:
        """The strip of the frames its question was asked over; None for a single-frame question."""
        return self.snapshot_dir / beside(request.frame) if request.window_frames else None

    def _bound(self, *, pending: bool) -> None:
        limit = self.max_pending if pending else self.max_labelled
        column = LabelRequest.label
        with self.db.session() as session, session.begin():
            kept = select(LabelRequest.id).where(column.is_(None) if pending else column.is_not(None))
            over = list(session.scalars(kept.order_by(LabelRequest.id.desc()).offset(limit)))
            if not over:
                return
            gone = list(session.scalars(select(LabelRequest).where(LabelRequest.id.in_(over))))
            frames = [request.frame for request in gone]
            frames += [beside(request.frame) for request in gone if request.window_frames]
            for request in gone:
                session.delete(request)
        for frame in frames:
            (self.snapshot_dir / frame).unlink(missing_ok=True)
        if not pending:
            log.warning("labels: deleted the %d oldest labelled requests (labels.max_labelled = %d)", len(gone), limit)
