"""An event as JSON: what MQTT's `<prefix>/events`, the event log, `streamwatch events --json` and the
web API say about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamwatch.store.models import Event


def event_payload(event: Event, media_dir: Path | None) -> dict[str, Any]:
    """The JSON published on `<prefix>/events` (and shown by `streamwatch events --json`); with the
    store's `media_dir` (storage.snapshot_dir), the snapshot's and the clip's file paths too. An open
    event's clip is named when the alert opens and written `clip_post_s` later (`clip_s`: its length
    once written, null while it is recorded)."""
    return {
        "type": event.kind,
        "event_id": event.uid,
        "alert_id": event.alert_id,
        "camera": event.camera,
        "rule": event.rule,
        "title": event.title,
        "severity": event.severity,
        "question": event.question,
        "answer": event.answer,
        "confidence": event.confidence,
        "description": event.description,
        "description_state": event.description_state,
        "held_s": None if event.held_s is None else round(event.held_s, 1),
        "previous_answer": event.previous_answer,
        "latency_s": round(event.latency_s, 3),
        "model": event.model,
        "frame_at": event.frame_at.isoformat(),
        "created_at": event.created_at.isoformat(),
        "snapshot": event.snapshot,
        "snapshot_file": str(media_dir / event.snapshot) if media_dir and event.snapshot else None,
        "clip": event.clip,
        "clip_file": str(media_dir / event.clip) if media_dir and event.clip else None,
        "clip_s": None if event.clip_s is None else round(event.clip_s, 2),
    }


def review_fields(event: Event) -> dict[str, Any]:
    """An operator's review of the event (web API, `streamwatch events mark`)."""
    return {
        "verdict": event.verdict,
        "note": event.note,
        "reviewed_at": event.reviewed_at.isoformat() if event.reviewed_at else None,
    }
