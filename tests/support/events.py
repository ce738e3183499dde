"""Events as tests write them straight into a store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamwatch.store.events import NewEvent


def new_event(uid: str, **fields: Any) -> NewEvent:
    """An `open` event of a critical fence rule on camera `gate`, `fields` changing any of it."""
    values: dict[str, Any] = {
        "uid": uid,
        "alert_id": uid,
        "kind": "open",
        "camera": "gate",
        "rule": "fence",
        "severity": "critical",
        "title": "Fence climbing",
        "question": "Is anyone climbing the fence? Answer yes or no.",
        "answer": "yes",
        "confidence": 0.93,
        "latency_s": 0.12,
        "model": "tiny-glm4v",
        "description": None,
        "frame_at": datetime.now(UTC),
    }
    return NewEvent(**(values | fields))
