"""MQTT topic names and message payloads: one place, so the docs, the publisher and the tests agree."""

from __future__ import annotations

import json
from pathlib import Path

from streamwatch.alerts.payload import event_payload
from streamwatch.config import MqttConfig
from streamwatch.ingest.status import CameraStatus
from streamwatch.store.message import Message
from streamwatch.store.models import Event
from streamwatch.vocabulary import EventKind


def mqtt_message(topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> Message:
    """A message for the MQTT output: QoS 1 (delivered at least once) unless told otherwise."""
    return Message(topic, payload, {"qos": qos, "retain": retain})


class Topics:
    """`<prefix>/available` (`<prefix>/available/<shard>` with several shards), `<prefix>/events`,
    `<prefix>/<camera>/status`, `<prefix>/<camera>/<rule>/state`, `.../snapshot`, `.../event` and
    `.../value`; Home Assistant's discovery configs are outputs/discovery.py's."""

    def __init__(self, config: MqttConfig, instance: str = "") -> None:
        self.prefix = config.topic_prefix
        self.ha_prefix = config.home_assistant_prefix
        self.instance = instance  # a camera shard's name: each shard has its own availability

    @property
    def available(self) -> str:
        return f"{self.prefix}/available/{self.instance}" if self.instance else f"{self.prefix}/available"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    def status(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"

    def state(self, camera: str, rule: str) -> str:
        return f"{self.prefix}/{camera}/{rule}/state"

    def snapshot(self, camera: str, rule: str) -> str:
        return f"{self.prefix}/{camera}/{rule}/snapshot"

    def alert_event(self, camera: str, rule: str) -> str:
        """Each alert transition as Home Assistant's MQTT event entity reads it (never retained)."""
        return f"{self.prefix}/{camera}/{rule}/event"

    def value(self, camera: str, rule: str) -> str:
        """A count or choice rule's current answer (retained)."""
        return f"{self.prefix}/{camera}/{rule}/value"

    # -- messages ----------------------------------------------------------------------------------
    def event_messages(self, event: Event, snapshot_jpeg: bytes | None, media_dir: Path | None) -> list[Message]:
        """What one event publishes, in order: the event, the state, the snapshot, the transition for
        Home Assistant's event entity (all QoS 1)."""
        payload = event_payload(event, media_dir)
        messages = [mqtt_message(self.events, json.dumps(payload).encode())]
        on = event.kind != EventKind.RESOLVED
        messages.append(mqtt_message(self.state(event.camera, event.rule), b"ON" if on else b"OFF", retain=True))
        if snapshot_jpeg is not None:
            messages.append(mqtt_message(self.snapshot(event.camera, event.rule), snapshot_jpeg, retain=True))
        shown = ("event_id", "alert_id", "severity", "title", "answer", "confidence", "description")
        transition = {"event_type": event.kind} | {key: payload[key] for key in shown}
        messages.append(mqtt_message(self.alert_event(event.camera, event.rule), json.dumps(transition).encode()))
        return messages

    def status_message(self, status: CameraStatus) -> Message:
        return mqtt_message(self.status(status.id), json.dumps(status.as_dict()).encode(), retain=True)
