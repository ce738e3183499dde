"""Outputs deliver independently: each has its own queue in the outbox, so one that is down (the MQTT
broker, an event log that cannot be written) holds back only its own messages, and nothing is deleted
before its own output delivered it. Against a real broker, a real database and real files, with the
service's own outputs; the model is a backend double driven by a flag file."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.helpers import REPO, free_port, get_json, wait_for
from support.mqtt import Broker, Subscriber
from support.service import FlagBackend, Running

from streamwatch.config import load_settings
from streamwatch.store.db import Database
from streamwatch.store.outbox import Outbox

RULE = """
[[rules]]
id = "flag"
title = "The flag is up"
severity = "critical"
question = "Is the flag up? Answer yes or no."
confirm = { n = 2, m = 2 }
cooldown_s = 0
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path) as running:
        yield running


def site(folder: Path, broker: Broker) -> Path:
    (folder / "rules").mkdir()
    (folder / "rules" / "flag.toml").write_text(RULE)
    config = folder / "config.toml"
    config.write_text(
        textwrap.dedent(f"""
        [model]
        id = "test/flag-double"
        [[cameras]]
        id = "gate"
        url = "{REPO / "samples" / "yard.mp4"}"
        sample_interval_s = 0.5
        change_area = 0  # the answers follow a flag file, not the picture: never reuse them
        [mqtt]
        host = "127.0.0.1"
        port = {broker.port}
        topic_prefix = "sw"
        keepalive_s = 5
        [event_log]
        enabled = true
        path = "log/events.jsonl"
        [web]
        port = {free_port()}
        [storage]
        database_url = "sqlite:///{folder / "events.db"}"
    """)
    )
    return config


def lines(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def waiting(folder: Path, sink: str) -> int:
    database = Database.open(f"sqlite:///{folder / 'events.db'}", migrate=False)
    try:
        return Outbox(database, sink=sink).size()
    finally:
        database.close()


def test_the_event_log_goes_on_while_the_broker_is_down(tmp_path: Path, broker: Broker) -> None:
    flag, log = tmp_path / "flag", tmp_path / "log" / "events.jsonl"
    settings = load_settings(site(tmp_path, broker))
    running = Running(settings, backend_factory=lambda _s: FlagBackend(flag))
    try:
        wait_for(lambda: running.service.answers.decisions >= 1, 30, "the first answers")
        broker.stop()
        flag.touch()
        wait_for(lambda: [e["type"] for e in lines(log)] == ["open"], 30, "the open event in the log")
        flag.unlink()
        wait_for(lambda: [e["type"] for e in lines(log)] == ["open", "resolved"], 30, "the resolve in the log")
        assert waiting(tmp_path, "mqtt") >= 4 and waiting(tmp_path, "event_log") == 0  # MQTT's wait for it
        broker.start()
        subscriber = Subscriber(broker.port, "sw/events")
        wait_for(lambda: waiting(tmp_path, "mqtt") == 0, 30, "MQTT to catch up")
        events = [json.loads(m.payload) for m in subscriber.wait_for("sw/events", 2)]
        assert [e["event_id"] for e in events] == [e["event_id"] for e in lines(log)]  # the same events, in order
        subscriber.close()
    finally:
        running.stop()


def test_mqtt_goes_on_while_the_event_log_cannot_be_written(tmp_path: Path, broker: Broker) -> None:
    flag, log = tmp_path / "flag", tmp_path / "log" / "events.jsonl"
    log.mkdir(parents=True)  # a folder where the file should be: every append fails
    subscriber = Subscriber(broker.port, "sw/events")
    settings = load_settings(site(tmp_path, broker))
    running = Running(settings, backend_factory=lambda _s: FlagBackend(flag))
    ready = f"http://127.0.0.1:{settings.web.port}/readyz"
    try:
        flag.touch()
        subscriber.wait_for("sw/events", 1, timeout=30)  # MQTT delivered the open event
        wait_for(lambda: waiting(tmp_path, "event_log") >= 1, 30, "the log's line to wait in the outbox")
        wait_for(lambda: "event_log" in get_json(ready)[1]["reasons"], 30, "readiness to name the event log")
        assert "event log cannot deliver: IsADirectoryError" in get_json(ready)[1]["reasons"]["event_log"]
        log.rmdir()  # fixed: the waiting lines go out, in order
        wait_for(lambda: len(lines(log)) >= 1 and waiting(tmp_path, "event_log") == 0, 60, "the log to catch up")
        assert lines(log)[0]["event_id"] == json.loads(subscriber.on("sw/events")[0].payload)["event_id"]
        wait_for(lambda: "event_log" not in get_json(ready)[1]["reasons"], 30, "readiness to clear")
    finally:
        running.stop()
        subscriber.close()
