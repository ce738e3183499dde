"""MQTT topic names and message payloads: one place, so the docs, the publisher and the tests agree."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streamwatch.alerts.payload import event_payload
from streamwatch.config import CameraConfig, MqttConfig
from streamwatch.ingest.status import CameraStatus
from streamwatch.outputs.message import Message
from streamwatch.rules.model import Rule
from streamwatch.store.models import Event
from streamwatch.vocabulary import EventKind, Severity


def mqtt_message(topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> Message:
    """A message for the MQTT output: QoS 1 (delivered at least once) unless told otherwise."""
    return Message(topic, payload, {"qos": qos, "retain": retain})


class Topics:
    """`<prefix>/available` (`<prefix>/available/<shard>` with several shards), `<prefix>/events`,
    `<prefix>/<camera>/status`, `<prefix>/<camera>/<rule>/state` and `.../snapshot`, Home Assistant
    discovery configs."""

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

    def discovery(self, camera: str, rule: str) -> str:
        return f"{self.ha_prefix}/binary_sensor/{self._object_id(camera, rule)}/config"

    def _object_id(self, camera: str, rule: str) -> str:
        return f"{self.prefix.replace('/', '_')}_{camera}_{rule}"

    # -- messages ----------------------------------------------------------------------------------
    def event_messages(self, event: Event, snapshot_jpeg: bytes | None, media_dir: Path | None) -> list[Message]:
        """What one event publishes, in order: the event, the state, the snapshot (all QoS 1)."""
        messages = [mqtt_message(self.events, json.dumps(event_payload(event, media_dir)).encode())]
        on = event.kind != EventKind.RESOLVED
        messages.append(mqtt_message(self.state(event.camera, event.rule), b"ON" if on else b"OFF", retain=True))
        if snapshot_jpeg is not None:
            messages.append(mqtt_message(self.snapshot(event.camera, event.rule), snapshot_jpeg, retain=True))
        return messages

    def announcements(
        self, pairs: Iterable[tuple[CameraConfig, Rule, bool]], statuses: Iterable[CameraStatus], *, discovery: bool
    ) -> list[Message]:
        """What a (re)connect publishes: per camera x rule (and whether its alert is open) the Home
        Assistant discovery config (when on) and the retained state, then every camera's status."""
        messages: list[Message] = []
        for camera, rule, is_open in pairs:
            if discovery:
                messages.append(self.discovery_message(camera, rule))
            messages.append(mqtt_message(self.state(camera.id, rule.id), b"ON" if is_open else b"OFF", retain=True))
        return messages + [self.status_message(status) for status in statuses]

    def status_message(self, status: CameraStatus) -> Message:
        return mqtt_message(self.status(status.id), json.dumps(status.as_dict()).encode(), retain=True)

    def discovery_message(self, camera: CameraConfig, rule: Rule) -> Message:
        config: dict[str, Any] = {
            "name": rule.title,
            "unique_id": self._object_id(camera.id, rule.id),
            "object_id": self._object_id(camera.id, rule.id),
            "state_topic": self.state(camera.id, rule.id),
            "payload_on": "ON",
            "payload_off": "OFF",
            "availability_topic": self.available,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device_class": "safety" if rule.severity is Severity.CRITICAL else "problem",
            "device": {
                "identifiers": [f"{self.prefix.replace('/', '_')}_{camera.id}"],
                "name": camera.display_name,
                "manufacturer": "streamwatch",
                "model": "VLM camera monitor",
            },
        }
        return mqtt_message(self.discovery(camera.id, rule.id), json.dumps(config).encode(), retain=True)
