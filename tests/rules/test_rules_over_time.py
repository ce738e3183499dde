"""Rules over time end to end through the alert pipeline, a real SQLite store and the event JSON that
every output sends: a for_s alert says how long its condition held, a change alert what it changed from."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PIL import Image

from streamwatch.alerts.payload import event_payload
from streamwatch.alerts.recorder import AlertPipeline
from streamwatch.config import CameraConfig
from streamwatch.inference.types import Answer
from streamwatch.rules.model import Rule
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore

CAMERA = CameraConfig(id="aisle", url="a.mp4")
IMAGE = Image.new("RGB", (64, 36))


def run(tmp_path: Path, rule: Rule, answers: list[tuple[float, str, float | None]]) -> list[dict[str, Any]]:
    """Feed (frame time, answer text, P(yes)) samples; returns the JSON of the events they caused."""
    store = EventStore(Database.open(f"sqlite:///{tmp_path / 'events.db'}"), tmp_path / "snapshots")

    async def scenario() -> list[dict[str, object]]:
        pipeline = AlertPipeline(store)
        payloads = []
        for at, text, p_yes in answers:
            answer = Answer(text, p_yes, 0.1, 1, "m")
            event = await pipeline.handle(CAMERA, rule, "q", answer, rule.is_alert(text, p_yes), IMAGE, at)
            if event is not None:
                payloads.append(event_payload(store.get(event.uid), None))  # type: ignore[arg-type]
        return payloads

    return asyncio.run(scenario())


def test_an_aisle_blocked_for_five_minutes(tmp_path: Path) -> None:
    rule = Rule(id="blocked", title="Aisle blocked", question="Is the aisle blocked? Answer yes or no.", for_s=300)
    samples: list[tuple[float, str, float | None]] = [
        (1000.0 + 30 * i, "yes" if i else "no", 0.9 if i else 0.1) for i in range(12)
    ]  # blocked from t=1030, held 300 s at t=1330
    events = run(tmp_path, rule, samples)
    assert [(e["type"], e["held_s"], e["frame_at"][11:19]) for e in events] == [("open", 300.0, "00:22:10")]


def test_a_count_that_changes(tmp_path: Path) -> None:
    rule = Rule.model_validate(
        {
            "id": "queue",
            "title": "Queue length changed",
            "question": "How many people?",
            "answer": "count",
            "on": "change",
            "min_delta": 2,
        }
    )
    events = run(tmp_path, rule, [(0.0, "2", None), (2.0, "3", None), (4.0, "5 people", None), (6.0, "5", None)])
    assert [(e["type"], e["answer"], e["previous_answer"]) for e in events] == [
        ("open", "5 people", "2"),
        ("resolved", "5", None),
    ]
