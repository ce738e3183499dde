"""`streamwatch run` end to end: RTSP camera -> rules -> alert events in SQLite + JPEG -> MQTT subscriber.

The tiny model's answers are random, so these tests use a backend double whose answer depends on the
frame: "yes" while the walking figure of the synthetic scene is in the right half of the picture.
(The real backend is tested in test_transformers_backend.py.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support.events import new_event
from support.helpers import REPO, get_json, wait_for
from support.mqtt import Broker, Subscriber
from support.service import RULES, Running, figure_on_the_right, write_site

from streamwatch.config import load_settings
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore, description_of
from streamwatch.tools.bench.rtsp import RtspServer


def test_rtsp_camera_to_mqtt_alert_events_with_rows_and_snapshots(
    tmp_path: Path, broker: Broker, clips: dict[str, Path]
) -> None:
    subscriber = Subscriber(broker.port, "#")
    with RtspServer({"/gate": clips["cam"]}) as rtsp:
        settings = load_settings(write_site(tmp_path, rtsp.url("/gate", userinfo="viewer:s3cret"), broker.port))
        running = Running(settings)
        try:
            # 8 s clip: the figure crosses the centre at 4 s; the camera restarts the clip at the end
            opened = json.loads(subscriber.wait_for("sw/events", 1, timeout=30)[0].payload)
            subscriber.wait_for("sw/events", 3, timeout=30)  # open, its description as an update, resolved
            base = f"http://127.0.0.1:{settings.web.port}"
            with urllib.request.urlopen(base + "/readyz") as ready:
                body = json.load(ready)
            model = body.pop("model")
            assert body == {
                "ready": True,
                "status": "ok",
                "reasons": {},
                "degraded": [],
                "checks": {
                    "model": True,
                    "database": True,
                    "broker": True,
                    "loops": True,
                    "rules": True,
                    "config": True,
                    "shadow": True,
                },
            }
            assert model["id"] == "scene-double" and model["adapter"] is None and model["reload_error"] is None
            with urllib.request.urlopen(base + "/metrics") as scrape:
                metrics = scrape.read().decode()
            assert 'streamwatch_alert_events_total{camera="gate",kind="open",rule="right-side"} 1.0' in metrics
            assert 'streamwatch_camera_up{camera="gate"}' in metrics
        finally:
            running.stop()
    events = [json.loads(m.payload) for m in subscriber.on("sw/events")]
    described, resolved = events[1], events[2]
    assert [e["type"] for e in events[:3]] == ["open", "update", "resolved"]
    for event in (opened, resolved):
        assert event["camera"] == "gate" and event["rule"] == "right-side" and event["severity"] == "critical"
        assert event["question"] == "Is a person standing at the right side of the fence? Answer yes or no."
        assert event["model"] == "scene-double" and event["latency_s"] >= 0
        assert set(event) >= {"event_id", "alert_id", "answer", "confidence", "frame_at", "created_at", "snapshot"}
    assert opened["answer"] == "yes" and opened["confidence"] == pytest.approx(0.95)
    assert resolved["answer"] == "no" and resolved["alert_id"] == opened["event_id"]
    # the open event went out at once; its description followed as an update of the same alert
    assert opened["description"] is None and opened["description_state"] == "pending"
    assert described["description"] == "A person in red walks along the fence."
    assert described["alert_id"] == opened["event_id"] and described["description_state"] == "done"
    # retained state, snapshot and Home Assistant discovery
    assert [m.payload for m in subscriber.on("sw/gate/right-side/state")][-2:] == [b"ON", b"OFF"]
    assert subscriber.on("sw/gate/right-side/snapshot")[0].payload[:2] == b"\xff\xd8"
    discovery = json.loads(subscriber.on("homeassistant/binary_sensor/sw_gate_right-side/config")[0].payload)
    assert discovery["state_topic"] == "sw/gate/right-side/state" and discovery["device_class"] == "safety"
    status = json.loads(subscriber.on("sw/gate/status")[-1].payload)
    assert status["state"] in ("online", "offline") and "s3cret" not in status["url"]
    assert [m.payload for m in subscriber.on("sw/available")][-1] == b"offline"
    # the database has the rows and the JPEG files exist
    store = EventStore(Database.open(settings.database_url()), tmp_path / "data" / "snapshots")
    rows = {e.uid: e for e in store.list()}
    assert set(rows) >= {opened["event_id"], resolved["event_id"]}
    snapshot = store.snapshot_path(rows[opened["event_id"]])
    assert snapshot is not None and snapshot.is_file()
    with Image.open(snapshot) as image:
        assert image.size == (640, 360) and figure_on_the_right(image)
    assert opened["snapshot_file"] == str(snapshot)
    # the open event names its clip (written clip_post_s later); the resolve has none
    assert opened["clip"] == rows[opened["event_id"]].snapshot.replace(".jpg", ".mp4")  # type: ignore[union-attr]
    assert opened["clip_file"] == str(snapshot.with_suffix(".mp4")) and resolved["clip"] is None
    subscriber.close()


def test_rule_edits_apply_while_running_and_broken_files_are_rejected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamwatch")
    settings = load_settings(write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None))
    rules = tmp_path / "rules" / "perimeter.toml"
    running = Running(settings)
    try:
        wait_for(lambda: len(running.decisions) >= 1, 20, "a first decision")
        rules.write_text(RULES.replace("standing at the right side of", "near"), encoding="utf-8")
        wait_for(lambda: running.decisions[-1].question.startswith("Is a person near the fence"), 20, "the edit")
        rules.write_text(RULES.replace("threshold = 0.5", 'threshold = "high"'), encoding="utf-8")
        wait_for(lambda: "rejected, keeping its previous version" in caplog.text, 10, "the rejection")
        count = len(running.decisions)
        wait_for(lambda: len(running.decisions) >= count + 2, 20, "decisions after the broken edit")
        assert running.decisions[-1].question.startswith("Is a person near the fence")  # still the good version
        assert f"{rules}:8: rules[0].threshold: Input should be a valid number" in caplog.text
    finally:
        running.stop()


def test_events_past_retention_are_deleted_at_start(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from streamwatch.store.models import Event

    settings = load_settings(write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None))
    store = EventStore(Database.open(settings.database_url()), tmp_path / "data" / "snapshots")
    for uid in ("old", "recent"):
        store.record(new_event(uid, rule="right-side"), b"jpeg")
    with store.db.session() as session, session.begin():
        old = session.query(Event).filter_by(uid="old").one()
        old.created_at = datetime.now(UTC) - timedelta(days=31)  # retention_days defaults to 30
    old_snapshot = tmp_path / "data" / "snapshots" / str(old.snapshot)
    running = Running(settings)
    try:
        wait_for(lambda: store.get("old") is None, 10, "retention to delete the old event")
    finally:
        running.stop()
    assert store.get("recent") is not None and not old_snapshot.exists()


def test_readiness_follows_the_broker_connection(tmp_path: Path, broker: Broker) -> None:
    settings = load_settings(write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), broker.port))
    url = f"http://127.0.0.1:{settings.web.port}/readyz"

    def ready() -> tuple[int, dict[str, Any]]:
        return get_json(url)

    running = Running(settings)
    try:
        wait_for(lambda: ready()[1]["status"] == "ok", 30, "ready with the broker up")
        broker.stop()  # nothing needs publishing now: the loss must be noticed anyway
        wait_for(lambda: ready()[1]["status"] == "degraded", 30, "readiness to say the broker is gone")
        status, body = ready()  # still watching (events wait in the outbox): ready, degraded, with the reason
        assert status == 200 and body["ready"] is True and body["degraded"] == ["broker"]
        assert f"not connected to 127.0.0.1:{broker.port}" in str(body["reasons"]["broker"])
        broker.start()
        wait_for(lambda: ready()[1]["status"] == "ok", 30, "ready again once the broker is back")
    finally:
        running.stop()


def test_describe_is_not_asked_on_a_camera_that_says_no(tmp_path: Path) -> None:

    from streamwatch.alerts.recorder import AlertPipeline
    from streamwatch.config import CameraConfig
    from streamwatch.inference.types import Answer
    from streamwatch.rules.model import Rule

    store = EventStore(Database.open(f"sqlite:///{tmp_path / 'events.db'}"), tmp_path / "snapshots")
    asked: list[str] = []

    async def describe(camera: CameraConfig, _rule: Rule, _image: Image.Image) -> str:
        asked.append(camera.id)
        return "a person"

    rule = Rule(id="r", title="R", question="Anyone? Answer yes or no.", describe="Describe them.")
    image = Image.new("RGB", (64, 36))

    async def scenario() -> list[tuple[str | None, str | None]]:
        pipeline = AlertPipeline(store, describe=describe)
        opened = []
        async with pipeline.running():
            for camera in (CameraConfig(id="demo", url="a.mp4", describe=False), CameraConfig(id="real", url="b.mp4")):
                answer = Answer("yes", 0.9, 0.1, 1, "m")
                event = await pipeline.handle(camera, rule, "Anyone?", answer, True, image, 1.0)
                assert event is not None and event.kind == "open"
                opened.append(event.uid)
        return [description_of(store.db, uid) for uid in opened]

    assert asyncio.run(scenario()) == [(None, None), ("done", "a person")] and asked == ["real"]
