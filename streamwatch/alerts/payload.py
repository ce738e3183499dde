"""An event as JSON: what MQTT's `<prefix>/events`, the event log, `streamwatch events --json` and the
web API say about it."""

from __future__ import annotations

from typing import Any

from streamwatch.store.models import Event


def event_payload(event: Event, snapshot_file: str | None) -> dict[str, Any]:
    """The JSON published on `<prefix>/events` (and shown by `streamwatch events --json`)."""
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
        "held_s": None if event.held_s is None else round(event.held_s, 1),
        "previous_answer": event.previous_answer,
        "latency_s": round(event.latency_s, 3),
        "model": event.model,
        "frame_at": event.frame_at.isoformat(),
        "created_at": event.created_at.isoformat(),
        "snapshot": event.snapshot,
        "snapshot_file": snapshot_file,
    }


def review_fields(event: Event) -> dict[str, Any]:
    """An operator's review of the event (web API, `streamwatch events mark`)."""
    return {
        "verdict": event.verdict,
        "note": event.note,
        "reviewed_at": event.reviewed_at.isoformat() if event.reviewed_at else None,
    }
